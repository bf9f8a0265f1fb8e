"""The composition root: every collaborator the entry points use, built once from the settings.

The CLI, the HTTP app and the service each make one `Components` and take what they need from it.
Each stage is handed its own settings section or plain values here; only this module (and the entry
points) read the whole `Settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Any

from syndicate.audit import AuditLog
from syndicate.campaigns import Campaigns
from syndicate.config import Settings
from syndicate.content import (
    CacheWriter,
    Category,
    CategoryRule,
    ContentSource,
    Corpus,
    CorpusMemory,
    ReaderOptions,
)
from syndicate.delivery import DeliveryService, Outbox
from syndicate.digest import EmailRenderer, LinkMaker, MessageBuilder, build_confirmation
from syndicate.mail import MailBackend, OutgoingMessage, make_backend
from syndicate.site import SiteUrls
from syndicate.storage import Database, open_database
from syndicate.subscribers import (
    WEEKDAYS,
    AddressRules,
    Confirmations,
    Frequency,
    LinkSigner,
    PlaceholderLinks,
    SignedLinks,
    Subscriber,
    SubscriberDefaults,
    SubscriberStore,
    signer_from_settings,
)


def utc_now() -> datetime:
    """The clock the entry points read; stages take `now` from them."""
    return datetime.now(UTC)


def subscriber_defaults(settings: Settings) -> SubscriberDefaults:
    """Preferences a new subscriber gets when they do not say (from the [digest] config)."""
    digest = settings.digest
    return SubscriberDefaults(
        frequency=Frequency(digest.frequency),
        timezone=digest.timezone or settings.site.timezone,
        send_hour=digest.send_hour,
        weekday=WEEKDAYS.index(digest.weekday),
    )


def content_source(settings: Settings) -> ContentSource:
    """The content folder as the [content], [site] and [categories] settings describe it."""
    return ContentSource(
        folder=settings.content.folder,
        options=ReaderOptions(
            timezone=settings.site.timezone,
            default_author=settings.site.author,
            date_format=settings.content.date_format,
            summary_length=settings.content.summary_length,
        ),
        rules=tuple(
            CategoryRule(slug=slug, title=rule.title, description=rule.description, aliases=rule.aliases)
            for slug, rule in settings.categories.items()
        ),
        cache=settings.content.cache,
    )


def load_corpus(settings: Settings, folder: Path | None = None, *, use_cache: bool = True,
                memory: CorpusMemory | None = None, writer: CacheWriter | None = None) -> Corpus:
    """Every article of the configured content folder (or `folder`): content_source(settings).read(...)."""
    return content_source(settings).read(folder, use_cache=use_cache, memory=memory, writer=writer)


def email_renderer(settings: Settings, **options: Any) -> EmailRenderer:
    """The email renderer for the [site], [email] and [digest] settings (`options`: EmailRenderer's)."""
    return EmailRenderer(settings.site, settings.email, settings.digest.subject, site_urls(settings), **options)


def message_builder(settings: Settings, renderer: EmailRenderer, links: LinkMaker, categories: Sequence[Category],
                    now: datetime, **options: Any) -> MessageBuilder:
    """A run's message builder for the [mail], [email] and [site] settings (`options`: MessageBuilder's)."""
    return MessageBuilder(settings.mail, settings.email, settings.site, renderer, links, categories, now, **options)


def site_urls(settings: Settings, base_url: str | None = None) -> SiteUrls:
    """The one URL builder of the site (`base_url` overrides the configured one, e.g. a bound port)."""
    return SiteUrls(base_url or settings.site.base_url, settings.feeds.folder)


class Components:
    """The collaborators of one process, each built on first use and then shared.

    `database` and `backend_factory` may be handed in (tests, the service's own database);
    `environ` stands in for os.environ where secrets are read.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        database: Database | None = None,
        backend_factory: Callable[[], MailBackend] | None = None,
        base_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._database = database
        self._owns_database = database is None
        self._backend_factory = backend_factory
        self._base_url = base_url

    # -- storage and subscribers

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = open_database(self.settings.database)
        return self._database

    @cached_property
    def store(self) -> SubscriberStore:
        return SubscriberStore(self.database, subscriber_defaults(self.settings))

    @cached_property
    def urls(self) -> SiteUrls:
        return site_urls(self.settings, self._base_url)

    @cached_property
    def signer(self) -> LinkSigner:
        """MissingSecretError (naming the variable) when the link secret is not set."""
        return signer_from_settings(self.settings.links, self.environ)

    def links(self, now: datetime | None = None) -> SignedLinks:
        """The signed unsubscribe and preferences links of real emails."""
        return SignedLinks(self.signer, self.urls, now=now)

    @cached_property
    def confirmations(self) -> Confirmations:
        return Confirmations(
            self.store,
            signer=self.signer,
            urls=self.urls,
            compose=self.confirmation_message,
            backend=self.backend,
            per_hour=self.settings.http.confirmations_per_hour,
            category_titles={slug: rule.title for slug, rule in self.settings.categories.items() if rule.title},
        )

    @cached_property
    def addresses(self) -> AddressRules:
        """How addresses entering by any door are checked: one backend is asked (and, with
        `[smtp] smtputf8 = "auto"`, remembers) whether it carries non-ASCII local parts."""
        return AddressRules(self.backend().carries_utf8_addresses)

    # -- content

    @cached_property
    def content(self) -> ContentSource:
        return content_source(self.settings)

    def corpus(self, folder: Path | None = None, *, memory: CorpusMemory | None = None) -> Corpus:
        return self.content.read(folder, memory=memory)

    # -- digests and mail

    @cached_property
    def renderer(self) -> EmailRenderer:
        return EmailRenderer(self.settings.site, self.settings.email, self.settings.digest.subject, self.urls)

    def backend(self) -> MailBackend:
        """A fresh mail backend (the handed-in factory's, else the configured one)."""
        if self._backend_factory is not None:
            return self._backend_factory()
        extra: dict[str, Any] = {"environ": self.environ} if self.settings.mail.backend == "smtp" else {}
        return make_backend(self.settings.mail, self.settings.smtp, **extra)

    def confirmation_message(self, subscriber: Subscriber, categories: Sequence[Category], confirm_url: str,
                             now: datetime) -> OutgoingMessage:
        """The double opt-in email for `subscriber`, ready for a mail backend."""
        data = build_confirmation(
            self.settings.mail, self.settings.email, self.settings.site, self.renderer, email=subscriber.email, name=subscriber.name,
            categories=categories, confirm_url=confirm_url, now=now,
        )
        found = re.search(rb"^Message-ID: (<[^>\r\n]+>)", data, re.MULTILINE | re.IGNORECASE)
        return OutgoingMessage(
            key=f"confirm-{subscriber.id}", sender=parseaddr(self.settings.mail.from_)[1],
            recipients=(subscriber.address.envelope,), data=data, message_id=found.group(1).decode() if found else "",
        )

    # -- delivery

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.database, self.settings.outbox, subscribers=self.store)

    @cached_property
    def delivery(self) -> DeliveryService:
        return DeliveryService(self.settings, self.database, self.content, environ=self.environ,
                               backend_factory=self._backend_factory)

    # -- operators (issue 17)

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(self.database)

    @cached_property
    def campaigns(self) -> Campaigns:
        return Campaigns(
            self.settings.mail, self.database, self.store, self.delivery, renderer=self.renderer,
            builder=lambda links, now: message_builder(self.settings, self.renderer, links, (), now),
            placeholder_links=PlaceholderLinks(self.urls), backend=self.backend, addresses=self.addresses,
        )

    def close(self) -> None:
        if self._owns_database and self._database is not None:
            self._database.close()
            self._database = None

"""The composition root: every collaborator the entry points use, built once from the settings.

The CLI, the HTTP app and the service each make one `Components` and take what they need from it.
Each stage is handed its own settings section or plain values here; only this module (and the entry
points) read the whole `Settings`.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syndicate.config import Settings, read_secret
from syndicate.content import (
    CacheWriter,
    Category,
    CategoryRule,
    ContentSource,
    Corpus,
    CorpusMemory,
    ReaderOptions,
    snapshot_path,
)
from syndicate.site import BuildSettings, SiteUrls

if TYPE_CHECKING:
    from syndicate.abuse import SignupLimits
    from syndicate.audit import AuditLog
    from syndicate.bounces import AddressTokens, BounceMailbox, BounceProcessor
    from syndicate.campaigns import Campaigns
    from syndicate.delivery import DeliveryConfig, DeliveryService, Outbox
    from syndicate.digest import EmailRenderer, LinkMaker, MessageBuilder
    from syndicate.mail import MailBackend, OutgoingMessage
    from syndicate.metrics import Metrics
    from syndicate.sources import FetchPolicy, Sources
    from syndicate.storage import Database
    from syndicate.subscribers import (
        AddressRules,
        Confirmations,
        LinkSigner,
        Notices,
        SignedLinks,
        Subscriber,
        SubscriberDefaults,
        SubscriberStore,
    )

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The clock the entry points read; stages take `now` from them."""
    return datetime.now(UTC)


def subscriber_defaults(settings: Settings) -> SubscriberDefaults:
    """Preferences a new subscriber gets when they do not say (from the [digest] config)."""
    from syndicate.subscribers import WEEKDAYS, Frequency, SubscriberDefaults
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
        follow_external_links=settings.content.follow_external_links,
        external=snapshot_path(settings.var_folder) if settings.sources else None,
        sources=frozenset(name for name, source in settings.sources.items() if source.enabled),
    )


def build_settings(settings: Settings) -> BuildSettings:
    """What the site build reads from the [site], [feeds], [output], [categories] and [websub] settings."""
    return BuildSettings(site=settings.site, feeds=settings.feeds, output=settings.output, categories=settings.categories,
                         hubs=tuple(str(hub) for hub in settings.websub.hubs), state=settings.var_folder / "build")


def delivery_config(settings: Settings) -> DeliveryConfig:
    """What the delivery stage reads: the sections of the digests, the mail and the outbox."""
    from syndicate.delivery import DeliveryConfig
    return DeliveryConfig(site=settings.site, feeds_folder=settings.feeds.folder, email=settings.email,
                          digest=settings.digest, mail=settings.mail, smtp=settings.smtp, dkim=settings.dkim,
                          links=settings.links, bounces=settings.bounces, outbox=settings.outbox)


def load_corpus(settings: Settings, folder: Path | None = None, *, use_cache: bool = True,
                memory: CorpusMemory | None = None, writer: CacheWriter | None = None,
                changed: Collection[str] | None = None) -> Corpus:
    """Every article of the configured content folder (or `folder`): content_source(settings).read(...)."""
    return content_source(settings).read(folder, use_cache=use_cache, memory=memory, writer=writer, changed=changed)


# -- issue 15: other sites' feeds as sources

def make_sources(settings: Settings, database: Database, *, policy: FetchPolicy | None = None) -> Sources:
    """The configured external sources over `database`."""
    from syndicate.sources import FetchPolicy, Sources
    return Sources(database, settings.sources, var_folder=settings.var_folder,
                   summary_length=settings.content.summary_length, policy=policy or FetchPolicy())


def email_renderer(settings: Settings, **options: Any) -> EmailRenderer:
    """The email renderer for the [site], [email] and [digest] settings (`options`: EmailRenderer's)."""
    from syndicate.digest import EmailRenderer
    return EmailRenderer(settings.site, settings.email, settings.digest.subject, site_urls(settings),
                         images=settings.digest.images, **options)


def message_builder(settings: Settings, renderer: EmailRenderer, links: LinkMaker, categories: Sequence[Category],
                    now: datetime, **options: Any) -> MessageBuilder:
    """A run's message builder for the [mail], [email] and [site] settings (`options`: MessageBuilder's)."""
    from syndicate.digest import MessageBuilder
    return MessageBuilder(settings.mail, settings.email, settings.site, renderer, links, categories, now, **options)


@contextmanager
def opened_database(settings: Settings) -> Iterator[Database]:
    """The [database], open for the with-block (for a command that may not need it at all)."""
    from syndicate.storage import open_database
    database = open_database(settings.database)
    try:
        yield database
    finally:
        database.close()


def site_urls(settings: Settings, base_url: str | None = None) -> SiteUrls:
    """The one URL builder of the site (`base_url` overrides the configured one, e.g. a bound port)."""
    return SiteUrls(base_url or settings.site.base_url, settings.feeds.folder)


# ---------------------------------------------------------------- secrets
# The link secret and the admin token from the environment; with `[http] generate_missing_secrets`
# (the demo), generated once into files under var/secrets/ and read by every command alike.

SECRETS_FOLDER = "secrets"

@dataclass(frozen=True)
class ServiceSecret:
    """A secret the service needs: its environment variable, what it is for, and where it came from."""

    variable: str
    what: str
    value: str
    generated_file: Path | None  # the file under var/ it was read from, None when set in the environment


def _secret_file(settings: Settings, variable: str) -> Path:
    return settings.var_folder / SECRETS_FOLDER / variable.lower()


def _read_or_create(path: Path) -> str:
    """The secret stored in `path`, created (mode 0600, never overwritten) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("secret file %s is readable by others (mode %o); chmod 600 it", path, mode)
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
        path.unlink()
        return _read_or_create(path)
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    log.info("generated a new secret in %s", path)
    return value


def service_secrets(settings: Settings, environ: Mapping[str, str] | None = None) -> tuple[ServiceSecret, ...]:
    """The link-signing secret and the admin token, from the environment; when missing and
    `[http] generate_missing_secrets` is on (the demo), generated once into files under var/
    and reused. Otherwise a missing link secret is a MissingSecretError, and a missing admin
    token leaves the admin API locked (the web app says so in the log)."""
    env = os.environ if environ is None else environ
    wanted = (
        (settings.links.secret_env, "signed links (confirm, unsubscribe, preferences)", True),
        (settings.http.admin_token_env, "the admin API token", False),
    )
    found = []
    for variable, what, required in wanted:
        if env.get(variable, "").strip():
            found.append(ServiceSecret(variable, what, env[variable], None))
        elif settings.http.generate_missing_secrets:
            path = _secret_file(settings, variable)
            found.append(ServiceSecret(variable, what, _read_or_create(path), path))
        elif required:
            read_secret(variable, what, env)  # raises MissingSecretError naming the variable
    return tuple(found)


def environ_with(secrets_: tuple[ServiceSecret, ...], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the service's parts read their secrets from (os.environ itself is left alone)."""
    return {**(os.environ if environ is None else environ), **{s.variable: s.value for s in secrets_}}


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
        env: Mapping[str, str] = os.environ if environ is None else environ
        if settings.http.generate_missing_secrets:  # the demo: the service and every command share them
            env = environ_with(service_secrets(settings, env), env)
        self.environ = env
        self._database = database
        self._owns_database = database is None
        self._backend_factory = backend_factory
        self._base_url = base_url

    # -- storage and subscribers

    @property
    def database(self) -> Database:
        from syndicate.storage import open_database
        if self._database is None:
            self._database = open_database(self.settings.database)
        return self._database

    @cached_property
    def store(self) -> SubscriberStore:
        from syndicate.subscribers import SubscriberStore
        return SubscriberStore(self.database, subscriber_defaults(self.settings))

    @cached_property
    def urls(self) -> SiteUrls:
        return site_urls(self.settings, self._base_url)

    @cached_property
    def signer(self) -> LinkSigner:
        """MissingSecretError (naming the variable) when the link secret is not set."""
        from syndicate.subscribers import signer_from_settings
        return signer_from_settings(self.settings.links, self.environ)

    def links(self, now: datetime | None = None) -> SignedLinks:
        """The signed unsubscribe and preferences links of real emails."""
        from syndicate.subscribers import SignedLinks
        return SignedLinks(self.signer, self.urls, now=now)

    @cached_property
    def confirmations(self) -> Confirmations:
        from syndicate.subscribers import Confirmations
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
    def signup_limits(self) -> SignupLimits:
        """The signup form's abuse limits ([signup]), counted in the database."""
        from syndicate.abuse import SignupLimits
        return SignupLimits(self.database, self.settings.signup)

    @cached_property
    def addresses(self) -> AddressRules:
        """How addresses entering by any door are checked: one backend is asked (and, with
        `[smtp] smtputf8 = "auto"`, remembers) whether it carries non-ASCII local parts."""
        from syndicate.subscribers import AddressRules
        return AddressRules(self.backend().carries_utf8_addresses)

    @cached_property
    def notices(self) -> Notices:
        """The welcome and "already subscribed" emails (issue 16)."""
        from syndicate.subscribers import Notices
        site = self.settings.site
        return Notices(
            self.store, signer=self.signer, urls=self.urls, compose=self.notice_message, backend=self.backend,
            per_hour=self.settings.http.confirmations_per_hour,
            category_titles={slug: rule.title for slug, rule in self.settings.categories.items() if rule.title},
            site_title=site.title, postal_address=site.postal_address,
            welcome=self.settings.email.welcome and self.renderer.has_template("welcome"),
        )

    def notice_message(self, subscriber: Subscriber, template: str, subject: str, values: Mapping[str, str],
                       now: datetime) -> OutgoingMessage:
        """A one-off email (welcome, already subscribed) for `subscriber`, ready for a mail backend."""
        from syndicate.digest import build_notice
        from syndicate.mail import OutgoingMessage
        data = build_notice(self.settings.mail, self.settings.email, self.settings.site, self.renderer,
                            email=subscriber.email, name=subscriber.name, template=template, subject=subject,
                            values=values, now=now)
        found = re.search(rb"^Message-ID: (<[^>\r\n]+>)", data, re.MULTILINE | re.IGNORECASE)
        return OutgoingMessage(
            key=f"{template}-{subscriber.id}", sender=parseaddr(self.settings.mail.from_)[1],
            recipients=(subscriber.email,), data=data, message_id=found.group(1).decode() if found else "",
        )

    # -- content

    @cached_property
    def content(self) -> ContentSource:
        return content_source(self.settings)

    @cached_property
    def build_settings(self) -> BuildSettings:
        return build_settings(self.settings)

    def corpus(self, folder: Path | None = None, *, memory: CorpusMemory | None = None) -> Corpus:
        return self.content.read(folder, memory=memory)

    # -- digests and mail

    @cached_property
    def renderer(self) -> EmailRenderer:
        from syndicate.digest import EmailRenderer
        return EmailRenderer(self.settings.site, self.settings.email, self.settings.digest.subject, self.urls,
                             images=self.settings.digest.images)

    def backend(self) -> MailBackend:
        """A fresh mail backend (the handed-in factory's, else the configured one)."""
        from syndicate.mail import make_backend
        if self._backend_factory is not None:
            return self._backend_factory()
        extra: dict[str, Any] = {"environ": self.environ} if self.settings.mail.backend == "smtp" else {}
        return make_backend(self.settings.mail, self.settings.smtp, dkim=self.settings.dkim, **extra)

    def confirmation_message(self, subscriber: Subscriber, categories: Sequence[Category], confirm_url: str,
                             now: datetime) -> OutgoingMessage:
        """The double opt-in email for `subscriber`, ready for a mail backend."""
        from syndicate.digest import build_confirmation
        from syndicate.mail import OutgoingMessage
        data = build_confirmation(
            self.settings.mail, self.settings.email, self.settings.site, self.renderer, email=subscriber.email, name=subscriber.name,
            categories=categories, confirm_url=confirm_url, now=now,
        )
        found = re.search(rb"^Message-ID: (<[^>\r\n]+>)", data, re.MULTILINE | re.IGNORECASE)
        verp = self.address_tokens.envelope_sender("s", subscriber.id) if self.address_tokens is not None else None
        return OutgoingMessage(
            key=f"confirm-{subscriber.id}", sender=verp or parseaddr(self.settings.mail.from_)[1],
            recipients=(subscriber.address.envelope,), data=data, message_id=found.group(1).decode() if found else "",
        )

    # -- delivery

    @cached_property
    def outbox(self) -> Outbox:
        from syndicate.delivery import Outbox
        return Outbox(self.database, self.settings.outbox, subscribers=self.store)

    @cached_property
    def delivery(self) -> DeliveryService:
        from syndicate.delivery import DeliveryService
        return DeliveryService(delivery_config(self.settings), self.database, self.content, environ=self.environ,
                               backend_factory=self._backend_factory)

    # -- deliverability (#13)

    @cached_property
    def address_tokens(self) -> AddressTokens | None:
        """bounce+TOKEN@ (VERP) and unsubscribe+TOKEN@ addresses; None while [bounces] configures neither."""
        from syndicate.bounces import address_tokens
        return address_tokens(self.settings.bounces, self.settings.links, self.environ)

    @cached_property
    def bounces(self) -> BounceProcessor:
        """The one processor every inbound path (pipe, mailbox, webhooks) feeds."""
        from syndicate.bounces import BouncePolicy, BounceProcessor
        return BounceProcessor(self.database, self.store, tokens=self.address_tokens,
                               policy=BouncePolicy.from_settings(self.settings.bounces))

    def bounce_mailbox(self) -> BounceMailbox | None:
        """The [bounces.imap] reader; None while no host is configured. MissingSecretError without its password."""
        from syndicate.bounces import BounceMailbox
        imap = self.settings.bounces.imap
        if not imap.host:
            return None
        password = read_secret(imap.password_env, "the bounce mailbox ([bounces.imap])", self.environ)
        return BounceMailbox(imap, password, self.bounces)

    # -- metrics (#14)

    @cached_property
    def metrics(self) -> Metrics:
        """This process's metrics, with the deployment-wide outbox gauges read at each scrape."""
        from syndicate.delivery import worker_metrics
        from syndicate.metrics import Metrics
        return worker_metrics(self.settings.outbox, self.database, Metrics())

    # -- sources (#15)

    @cached_property
    def sources(self) -> Sources:
        """The configured external sources (issue 15)."""
        return make_sources(self.settings, self.database)
    # -- operators (issue 17)

    @cached_property
    def audit(self) -> AuditLog:
        from syndicate.audit import AuditLog
        return AuditLog(self.database)

    @cached_property
    def campaigns(self) -> Campaigns:
        from syndicate.campaigns import Campaigns
        from syndicate.subscribers import PlaceholderLinks
        return Campaigns(
            self.settings.mail, self.database, self.store, self.delivery, renderer=self.renderer,
            builder=lambda links, now: message_builder(self.settings, self.renderer, links, (), now),
            placeholder_links=PlaceholderLinks(self.urls), backend=self.backend, addresses=self.addresses,
        )

    def close(self) -> None:
        if self._owns_database and self._database is not None:
            self._database.close()
            self._database = None

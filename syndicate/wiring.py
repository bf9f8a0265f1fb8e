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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Any

from syndicate.abuse import SignupLimits
from syndicate.config import Settings, read_secret
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
    SignedLinks,
    Subscriber,
    SubscriberDefaults,
    SubscriberStore,
    signer_from_settings,
)

log = logging.getLogger(__name__)


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
        follow_external_links=settings.content.follow_external_links,
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
    def signup_limits(self) -> SignupLimits:
        """The signup form's abuse limits ([signup]), counted in the database."""
        return SignupLimits(self.database, self.settings.signup)

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

    def close(self) -> None:
        if self._owns_database and self._database is not None:
            self._database.close()
            self._database = None

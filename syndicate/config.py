"""Loads the TOML configuration once, validates every key, and hands out frozen settings."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from syndicate.errors import ConfigError, MissingSecretError, WeakSecretError

DEFAULT_CONFIG_PATH = Path("config/syndicate.toml")
CONFIG_ENV = "SYNDICATE_CONFIG"


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths in a config file are relative to that file's folder."""
    base = (info.context or {}).get("base")
    if base is not None and not value.is_absolute():
        return (Path(base) / value).resolve()
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of the database ("Europe"), a name too long
        raise ValueError(f"unknown timezone {json.dumps(value)} (expected an IANA name such as Europe/Paris)") from None
    return value


Timezone = Annotated[str, AfterValidator(_check_timezone)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, validate_default=True)


class SiteSettings(Section):
    title: str = "Syndicate Demo"
    base_url: str = "http://127.0.0.1:8000"
    timezone: Timezone = "UTC"
    language: str = "en"
    author: str = "Syndicate"
    description: str = "Articles by category, as feeds and email digests."
    # What readers see (issue 16): the digest's logo (absolute URL, shown at its width and height)
    # and the sender's postal address in every digest's footer (CAN-SPAM; `syndicate check` warns without it).
    logo: str | None = Field(None, description="absolute URL of the logo image shown in the digest's masthead")
    logo_width: int = Field(120, ge=1, le=600, description="the logo's width in the digest, in pixels")
    logo_height: int = Field(40, ge=1, le=300, description="the logo's height in the digest, in pixels")
    logo_alt: str | None = Field(None, description="the logo's alternative text (default: the site title)")
    postal_address: str | None = Field(
        None, description="the sender's postal address, in every digest's footer (required by CAN-SPAM)",
    )

    @field_validator("logo")
    @classmethod
    def _absolute_logo(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an absolute http(s) URL of an image, got {json.dumps(value)}")
        return value

    @field_validator("base_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an absolute http(s) URL, got {json.dumps(value)}")
        return value.rstrip("/")


class ContentSettings(Section):
    folder: ConfigPath = Path("content")
    date_format: str = "%m/%d/%Y"
    cache: ConfigPath = Path("var/cache/articles.pickle")
    summary_length: int = Field(300, ge=40)
    follow_external_links: bool = Field(
        False, description="publish articles that are symlinks to files outside the content folder",
    )


class CategorySettings(Section):
    title: str | None = None
    description: str | None = None
    aliases: tuple[str, ...] = ()


class OutputSettings(Section):
    folder: ConfigPath = Path("public")
    pages: bool = True  # false: write only the feeds and the OPML (the site's pages live elsewhere)
    templates: ConfigPath | None = Field(
        None, description="a folder of page templates (and site.css) replacing the built-in ones of the same name",
    )


class FeedSettings(Section):
    formats: tuple[Literal["rss", "atom", "json"], ...] = ("rss", "atom", "json")
    items: int = Field(50, ge=1)
    folder: str = "feeds"
    workers: int | None = Field(None, ge=1)
    opml_format: Literal["rss", "atom"] = Field(
        "atom", description="the format of each category's feed in the main OPML (feeds/index.opml)",
    )


class DatabaseSettings(Section):
    url: str = "sqlite:///var/syndicate.db"
    echo: bool = False
    busy_timeout: float = Field(10.0, gt=0, le=600, description="seconds a SQLite writer waits for another's lock "
                                "before the command fails (exit 2) or the page answers 503")

    @field_validator("url")
    @classmethod
    def _resolve_sqlite(cls, value: str, info: ValidationInfo) -> str:
        """A relative SQLite file path is relative to the config file's folder."""
        prefix = "sqlite:///"
        base = (info.context or {}).get("base")
        if value.startswith(prefix) and base is not None:
            path = value[len(prefix):]
            if path and path != ":memory:" and not path.startswith("/"):
                return prefix + str((Path(base) / path).resolve())
        if "://" not in value:
            raise ValueError(f"expected a database URL such as sqlite:///var/syndicate.db, got {json.dumps(value)}")
        return value


class LinkSettings(Section):
    secret_env: EnvName = "SYNDICATE_SECRET"
    previous_secrets_env: EnvName = "SYNDICATE_PREVIOUS_SECRETS"
    confirm_max_age: int = Field(7 * 24 * 3600, ge=60)
    preferences_max_age: int = Field(180 * 24 * 3600, ge=60)


class DigestSettings(Section):
    max_articles: int = Field(30, ge=1)
    subject: str = "{{ top }}{% if count > 1 %}, and {{ count - 1 }} more in {{ categories }}{% endif %}"
    frequency: Literal["daily", "weekly"] = "daily"
    send_hour: int = Field(8, ge=0, le=23)
    weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] = "monday"
    timezone: Timezone | None = None
    images: bool = Field(False, description="show each article's first image (or front matter `image`) in the digest")


class EmailSettings(Section):
    css_inliner: Literal["premailer", "css-inline"] = "premailer"
    list_id: str | None = None
    unsubscribe_mailto: str | None = None
    templates: ConfigPath | None = None
    welcome: bool = Field(True, description="send the welcome email (templates email/welcome.*) after a subscriber confirms")


class MailSettings(Section):
    backend: Literal["smtp", "file", "console", "memory"] = "file"
    from_: str = Field("Syndicate Demo <digest@localhost>", alias="from")
    reply_to: str | None = None
    domain: str = "localhost"
    folder: ConfigPath = Path("var/outbox")


def _is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SmtpSettings(Section):
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    allow_plaintext_auth: bool = Field(
        False, description='with security = "none", log in (password in clear) to a host that is not a loopback address',
    )
    username: str | None = None
    password_env: EnvName = "SYNDICATE_SMTP_PASSWORD"
    timeout: float = Field(30.0, gt=0)
    connections: int = Field(4, ge=1, le=64)
    rate: float | None = Field(None, gt=0)
    max_per_connection: int = Field(500, ge=1)
    ehlo_name: str | None = None
    ca_file: ConfigPath | None = None

    @field_validator("username")
    @classmethod
    def _no_password_in_clear(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A login over a plain connection sends the password in clear: only to this machine, or when told."""
        data = info.data
        if value and data.get("security") == "none" and not data.get("allow_plaintext_auth") and \
                not _is_loopback(str(data.get("host", ""))):
            raise ValueError(
                f'with security = "none" the password would cross the network in clear to {data.get("host")}; '
                'use security = "starttls" or "tls" (or set allow_plaintext_auth = true if the network is private)'
            )
        return value
    pipelining: bool = Field(
        True, description="send MAIL FROM, RCPT TO and DATA in one write when the server offers PIPELINING (RFC 2920), with the previous message's data when one is waiting",
    )
    domain_rate: dict[str, Annotated[float, Field(gt=0)]] = Field(
        {}, description='messages a second to each recipient domain named, e.g. {"gmail.com" = 20}, for all '
        'workers together ([delivery] mode = "workers" only)',
    )
    smtputf8: Literal["auto", "yes", "no"] = Field(
        "auto",
        description="whether the relay delivers to addresses with non-ASCII characters before the @ (SMTPUTF8, "
        "RFC 6531): \"auto\" asks it (EHLO) when such an address signs up; \"no\" refuses them at entry; "
        "\"yes\" accepts them without asking. An address whose only non-ASCII part is the domain always "
        "travels IDNA-encoded",
    )


class OutboxSettings(Section):
    retry_backoff: float = Field(300.0, gt=0, description="seconds before the first retry")
    retry_factor: float = Field(2.0, ge=1)
    max_attempts: int = Field(8, ge=1)
    max_age: float = Field(48 * 3600.0, gt=0, description="seconds after which a retrying delivery fails")
    bounce_after: int = Field(3, ge=1, description="permanent failures before a subscriber is bounced")
    in_flight: Literal["resend", "fail"] = "resend"
    workers: int | None = Field(
        None, ge=1, le=64,
        description="processes that send one run at once (default: one per core), each claiming its own batches "
        "and taking its share of [smtp] connections; smtp and file backends only, runs of 400 deliveries or more",
    )
    claim_timeout: float = Field(
        30.0, ge=3, description='seconds without a heartbeat after which a `syndicate worker`\'s claims are recovered '
        '(per in_flight) by the other workers ([delivery] mode = "workers")',
    )


class ScheduleSettings(Section):
    enabled: bool = True
    rebuild_interval: int = Field(60, ge=1)
    digest_interval: int = Field(15 * 60, ge=60)
    retry_interval: int = Field(60, ge=1)
    misfire_grace: int = Field(3600, ge=1)
    prune_after_days: int = Field(90, ge=1)
    lease_seconds: int = Field(60, ge=5)


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    admin_token_env: EnvName = "SYNDICATE_ADMIN_TOKEN"
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    confirmations_per_hour: int = Field(3, ge=1)
    generate_missing_secrets: bool = False
    trusted_proxies: tuple[str, ...] = Field(
        (), description="addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For names the client; "
        "the header from anyone else is ignored",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"expected an IP address or network such as 10.0.0.0/8, got {json.dumps(entry)}") from None
        return value


# --- [signup]: limits on how much mail the public signup form can make us send (issue 12)
class SignupSettings(Section):
    per_client_per_hour: int = Field(5, ge=1, description="sign-ups accepted from one client address (IPv6: one /64)")
    per_mailbox_per_hour: int = Field(
        3, ge=1, description="sign-ups accepted for one mailbox, after removing plus-tags (and dots at gmail.com)",
    )
    per_domain_per_hour: int = Field(30, ge=1, description="sign-ups accepted for addresses at one domain")
    overall_per_hour: int = Field(200, ge=1, description="sign-ups accepted in all")
    min_form_seconds: float = Field(
        3.0, ge=0, description="a form posted sooner after it was served is taken for a robot's and ignored",
    )
# --- end [signup]


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"


# -- deliverability (#13): bounces, complaints, suppression, DKIM --------------------------------

class BounceImapSettings(Section):
    """The bounce mailbox, polled by the scheduler; off while `host` is unset."""

    host: str | None = None
    port: int = Field(993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str | None = None
    password_env: EnvName = "SYNDICATE_BOUNCE_IMAP_PASSWORD"
    folder: str = "INBOX"
    processed_folder: str = Field("syndicate-processed", description="where recognised messages are moved (created if missing)")
    interval: int = Field(300, ge=10, description="seconds between two polls")
    batch: int = Field(200, ge=1, description="messages read per poll at most")
    timeout: float = Field(30.0, gt=0)
    ca_file: ConfigPath | None = None


class BounceWebhookSettings(Section):
    """Provider webhooks under /webhooks/; each is refused (404) until its secret is configured."""

    token_env: EnvName = Field("SYNDICATE_WEBHOOK_TOKEN", description="bearer token of the generic JSON webhook")
    sendgrid_public_key: str | None = Field(None, description="SendGrid's verification key (base64 DER or PEM)")
    mailgun_signing_key_env: EnvName = "SYNDICATE_MAILGUN_SIGNING_KEY"
    postmark_username: str | None = None
    postmark_password_env: EnvName = "SYNDICATE_POSTMARK_WEBHOOK_PASSWORD"
    sns_topic_arns: tuple[str, ...] = Field((), description="SNS topics accepted (none: SES webhook off)")
    sns_cert_hosts: tuple[str, ...] = Field(
        ("sns.*.amazonaws.com",), description="hosts (glob) the SNS signing certificate may be fetched from, over https",
    )
    sns_ca_file: ConfigPath | None = Field(None, description="extra CA bundle to trust for the SNS certificate host (tests)")
    sns_max_age: int = Field(86400, ge=60, description="seconds an SNS message (retries keep its Timestamp) stays acceptable")
    timestamp_window: int = Field(300, ge=10, description="seconds a signed SendGrid or Mailgun event stays acceptable")


class BounceSettings(Section):
    return_path: str | None = Field(
        None, description='envelope sender per delivery, e.g. "bounce+{token}@news.example.org" (VERP); '
        "leave unset when the relay rewrites the envelope sender",
    )
    unsubscribe_address: str | None = Field(
        None, description='per-subscriber List-Unsubscribe mailto, e.g. "unsubscribe+{token}@news.example.org"',
    )
    hard_limit: int = Field(1, ge=1, description="hard bounces that mark a subscriber bounced")
    soft_limit: int = Field(3, ge=1, description="soft bounces within soft_window days that mark a subscriber bounced")
    soft_window: int = Field(14, ge=1, description="days")
    max_message_bytes: int = Field(10 * 1024 * 1024, ge=64 * 1024, description="inbound messages are kept up to this size")
    bounce_rate_warning: float = Field(0.02, gt=0, le=1, description="status warns above this bounce rate (0.02 = 2%)")
    complaint_rate_warning: float = Field(0.001, gt=0, le=1, description="status warns above this complaint rate (0.001 = 0.1%)")
    imap: BounceImapSettings = Field({}, description="the bounce mailbox read over IMAP")  # type: ignore[assignment]
    webhooks: BounceWebhookSettings = Field({}, description="provider webhooks under /webhooks/")  # type: ignore[assignment]

    @field_validator("return_path", "unsubscribe_address")
    @classmethod
    def _token_template(cls, value: str | None) -> str | None:
        if value is not None and (value.count("{token}") != 1 or "@" not in value.split("{token}", 1)[1]):
            raise ValueError(f"expected a local part holding {{token}} then @domain, got {json.dumps(value)}")
        return value


class DkimSettings(Section):
    domain: str | None = Field(None, description="d= of the signature; signing is off while unset")
    selector: str = Field("syndicate", description="s= of the signature: the key is published at SELECTOR._domainkey.DOMAIN")
    private_key_file: ConfigPath | None = Field(None, description="PEM private key (`syndicate dkim keygen` writes one)")
    algorithm: Literal["rsa-sha256", "ed25519-sha256"] = Field("rsa-sha256", description="the key's algorithm")
    body_canonicalization: Literal["simple", "relaxed"] = Field(
        "simple", description="c=relaxed/simple (our bodies are CRLF quoted-printable; cheapest) or relaxed/relaxed",
    )
    headers: tuple[str, ...] = Field(description="header fields signed (those present in a message)", default=(
        "From", "To", "Subject", "Date", "Message-ID", "Reply-To", "List-Id", "List-Unsubscribe",
        "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
    ))
# ---------------------------------------------------------------- delivery mode (issue 14)

class DeliverySettings(Section):
    mode: Literal["inline", "workers"] = Field(
        "inline", description='"inline": the service (and `syndicate send`) sends itself; "workers": they only plan '
        "runs into the outbox and `syndicate worker` processes send them (PostgreSQL only; [smtp] rate, connections "
        "and domain_rate then hold for the whole deployment)",
    )
# ---------------------------------------------------------------- sources, WebSub, watching (issue 15)

def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an absolute http(s) URL, got {json.dumps(value)}")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Regex = Annotated[str | None, AfterValidator(_check_regex)]


class SourceSettings(Section):
    """`[sources.NAME]`: another site's feed whose items become articles of `categories`."""

    url: HttpUrl = Field(description="the feed's address (RSS, Atom or JSON Feed); required")
    categories: tuple[str, ...] = Field(min_length=1, description="the categories its items are published in; required")
    title: str | None = Field(None, description="the source's name as shown (default: the feed's own title)")
    enabled: bool = Field(True, description="false: not fetched, and its items are not published")
    interval: int = Field(3600, ge=60, description="seconds between fetches")
    max_items: int = Field(50, ge=1, le=1000, description="newest items kept and published")
    include: Regex = Field(None, description="only items whose title or text match this regex")
    exclude: Regex = Field(None, description="drop items whose title or text match this regex")
    full_content: bool = Field(True, description="publish the item's full content (false: its summary only)")


class WebSubSettings(Section):
    """`[websub]`: hubs announced in every feed and told when a feed changed."""

    hubs: tuple[HttpUrl, ...] = Field((), description="hub URLs; empty: no WebSub")
    retries: int = Field(3, ge=0, le=10, description="retries of a failed announcement (0.5 s, 1 s, 2 s, ...)")
    timeout: float = Field(10.0, gt=0, description="seconds to wait for a hub's answer")


class WatchSettings(Section):
    """`[watch]`: the service rebuilds as soon as the content folder changes."""

    enabled: bool = Field(True, description="watch the content folder (false: rebuild every [schedule] rebuild_interval only)")
    debounce_ms: int = Field(50, ge=1, le=10_000, description="most milliseconds a burst of changes is gathered before a rebuild")


SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# -- operators (issue 17) ------------------------------------------------------------------
class AdminUser(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,60}$")
    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$", description="from `syndicate admin hash-password`")


class AdminSettings(Section):
    session_minutes: int = Field(480, ge=1, le=7 * 24 * 60)
    users: tuple[AdminUser, ...] = ()


class Settings(Section):
    """The whole configuration; `path` is the file it came from (None for pure defaults)."""

    path: Path | None = None
    site: SiteSettings = {}  # type: ignore[assignment]
    content: ContentSettings = {}  # type: ignore[assignment]
    categories: dict[str, CategorySettings] = {}
    output: OutputSettings = {}  # type: ignore[assignment]
    feeds: FeedSettings = {}  # type: ignore[assignment]
    database: DatabaseSettings = {}  # type: ignore[assignment]
    links: LinkSettings = {}  # type: ignore[assignment]
    digest: DigestSettings = {}  # type: ignore[assignment]
    email: EmailSettings = {}  # type: ignore[assignment]
    mail: MailSettings = {}  # type: ignore[assignment]
    smtp: SmtpSettings = {}  # type: ignore[assignment]
    outbox: OutboxSettings = {}  # type: ignore[assignment]
    delivery: DeliverySettings = {}  # type: ignore[assignment]
    schedule: ScheduleSettings = {}  # type: ignore[assignment]
    http: HttpSettings = {}  # type: ignore[assignment]
    signup: SignupSettings = {}  # type: ignore[assignment]
    logging: LoggingSettings = {}  # type: ignore[assignment]
    bounces: BounceSettings = {}  # type: ignore[assignment]  # deliverability (#13)
    dkim: DkimSettings = {}  # type: ignore[assignment]
    sources: dict[str, SourceSettings] = {}
    websub: WebSubSettings = {}  # type: ignore[assignment]
    watch: WatchSettings = {}  # type: ignore[assignment]
    admin: AdminSettings = {}  # type: ignore[assignment]

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, SourceSettings]) -> dict[str, SourceSettings]:
        bad = [name for name in value if not SOURCE_NAME.match(name)]
        if bad:
            raise ValueError(f"source name {json.dumps(bad[0])}: use lowercase letters, digits, - and _ (at most 64)")
        return value

    @property
    def base_folder(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def var_folder(self) -> Path:
        """Where state that is not content lives (caches, SQLite, generated demo secrets)."""
        return self.content.cache.parent.parent if self.content.cache.parent.name == "cache" else self.content.cache.parent


MIN_SECRET_BYTES = 32  # the link secret and the admin token (the generated ones have 43)


def read_secret(variable: str, what: str, environ: Mapping[str, str] | None = None, *, min_bytes: int = 0) -> str:
    """The value of the secret held in environment variable `variable`, or a clear error
    (MissingSecretError; WeakSecretError when shorter than `min_bytes`)."""
    value = (os.environ if environ is None else environ).get(variable, "")
    if not value.strip():
        raise MissingSecretError(what, variable)
    if len(value.strip().encode()) < min_bytes:
        raise WeakSecretError(what, variable, len(value.strip().encode()), min_bytes)
    return value


def _describe(error: Mapping[str, Any]) -> str:
    """`[section] key: what is wrong` for one pydantic error."""
    loc = list(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden" and len(loc) == 1:
        return f"unknown section or key {json.dumps(str(loc[0]))}"
    last = max((i for i, part in enumerate(loc) if isinstance(part, str)), default=0)
    table = [str(part) for part in loc[:last]]
    key = str(loc[last]) + "".join(f"[{part}]" for part in loc[last + 1:])
    where = f"[{'.'.join(table)}] {key}" if table else key
    value = error.get("input")
    got = json.dumps(value, default=str) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
    messages = {
        "extra_forbidden": "unknown key",
        "missing": "required key is missing",
        "int_parsing": f"expected an integer, got {got}",
        "int_type": f"expected an integer, got {got}",
        "int_from_float": f"expected an integer, got {got}",
        "float_parsing": f"expected a number, got {got}",
        "float_type": f"expected a number, got {got}",
        "bool_parsing": f"expected true or false, got {got}",
        "bool_type": f"expected true or false, got {got}",
        "string_type": f"expected a string, got {got}",
        "dict_type": f"expected a table, got {got}",
        "model_type": f"expected a table, got {got}",
        "tuple_type": f"expected a list, got {got}",
        "list_type": f"expected a list, got {got}",
    }
    if kind in messages:
        message = messages[kind]
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind == "literal_error":
        message = f"expected {error['ctx']['expected']}, got {got}"
    else:
        message = f"{error['msg'][0].lower()}{error['msg'][1:]}, got {got}"
    return f"{where}: {message}"


def load_settings(path: Path | str | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the config file; every problem is reported at once in a ConfigError.

    `path` defaults to $SYNDICATE_CONFIG, else config/syndicate.toml.
    """
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"], hint="pass --config PATH or set SYNDICATE_CONFIG") from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read config file: {e.strerror}"]) from e
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text (byte {e.start})"]) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: invalid TOML: {e}"]) from e
    return settings_from_mapping(data, path=path)


def settings_from_mapping(data: Mapping[str, Any], *, path: Path | None = None) -> Settings:
    """Validate an already-parsed config mapping (relative paths against `path`'s folder)."""
    if "path" in data:
        raise ConfigError([f"{path or '<config>'}: unknown section or key \"path\""])
    base = (path.parent if path else Path.cwd()).resolve()
    try:
        settings = Settings.model_validate({**data, "path": path.resolve() if path else None}, context={"base": base})
    except ValidationError as e:
        name = str(path) if path else "<config>"
        raise ConfigError([f"{name}: {_describe(err)}" for err in e.errors()]) from None
    return settings


def default_settings(base: Path | None = None) -> Settings:
    """Embedded defaults, with relative paths against `base` (the working directory by default)."""
    base = (base or Path.cwd()).resolve()
    return Settings.model_validate({}, context={"base": base})

"""Loads the TOML configuration once, validates every key, and hands out frozen settings."""

from __future__ import annotations

import ipaddress
import json
import os
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
    except (ZoneInfoNotFoundError, ValueError):
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


class FeedSettings(Section):
    formats: tuple[Literal["rss", "atom", "json"], ...] = ("rss", "atom", "json")
    items: int = Field(50, ge=1)
    folder: str = "feeds"
    workers: int | None = Field(None, ge=1)


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
    subject: str = "{{ site }}: {{ count }} new {{ 'article' if count == 1 else 'articles' }} in {{ categories }}"
    frequency: Literal["daily", "weekly"] = "daily"
    send_hour: int = Field(8, ge=0, le=23)
    weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] = "monday"
    timezone: Timezone | None = None


class EmailSettings(Section):
    css_inliner: Literal["premailer", "css-inline"] = "premailer"
    list_id: str | None = None
    unsubscribe_mailto: str | None = None
    templates: ConfigPath | None = None


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
        True, description="send MAIL FROM, RCPT TO and DATA in one write when the server offers PIPELINING (RFC 2920)",
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
    schedule: ScheduleSettings = {}  # type: ignore[assignment]
    http: HttpSettings = {}  # type: ignore[assignment]
    signup: SignupSettings = {}  # type: ignore[assignment]
    logging: LoggingSettings = {}  # type: ignore[assignment]

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

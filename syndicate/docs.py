"""Writes docs/configuration.md from the configuration models: every key of every section, its default and an example.

    python -m syndicate.docs            # regenerate docs/configuration.md
    python -m syndicate.docs --check    # exit 1 if it is out of date or a key has no description

A key is described by `Field(description=...)` in syndicate/config.py or, failing that, in DESCRIPTIONS below.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from syndicate.config import Settings

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

SECTIONS = {
    "site": "The site as readers see it: its name, address and timezone.",
    "content": "Where the Markdown articles are and how they are read.",
    "categories": "Optional, one table per category slug (`[categories.sports]`): its title, description and other names.",
    "output": "Where the built site (feeds, OPML, pages) is written.",
    "feeds": "Which feeds are written and how many items each holds.",
    "database": "The one database holding subscribers, the outbox, runs, the scheduler's jobs and its lease.",
    "links": "Signed links in emails (confirm, unsubscribe, preferences). The secrets themselves live in the environment.",
    "digest": "What a digest holds, and the schedule new subscribers get unless they choose otherwise.",
    "email": "How digest emails are rendered.",
    "mail": "How mail leaves: the backend and the sender.",
    "smtp": "The SMTP relay, when `[mail] backend = \"smtp\"`.",
    "outbox": "Retries and failures of deliveries.",
    "schedule": "What `syndicate run` does by itself, and how often.",
    "http": "The HTTP server of `syndicate run` and the admin API.",
    "signup": "Limits on the public signup form, so that nobody can use it to mail-bomb a stranger (see docs/operations.md).",
    "admin": "The operators' web console at /admin/ (sign in with the admin token).",
    "logging": "Log output (one line per event, on stderr).",
    "delivery": "Who sends the digests: the service itself, or `syndicate worker` processes (docs/scaling.md).",
    # issue 15
    "sources": "Optional, one table per external feed (`[sources.garden]`): its items become articles of `categories`, "
               "naming and linking their source. `syndicate sources list|fetch|check`.",
    "websub": "WebSub: hubs every feed announces (`<link rel=\"hub\">`) and that `syndicate run` tells when a feed changed.",
    "watch": "`syndicate run` watches the content folder and rebuilds within the debounce window of a save.",
}
# Sections that are tables of named tables, with the name their example uses.
NAMED_TABLES = {"categories": "sports", "sources": "garden"}

DESCRIPTIONS = {
    "site.title": "The site's name, in feeds, pages and email subjects.",
    "site.base_url": "The public address of the site; every link in feeds and emails starts with it.",
    "site.timezone": "IANA timezone for dates shown on pages, and the digest timezone unless `[digest] timezone` is set.",
    "site.language": "Language code of feeds and pages.",
    "site.author": "Default author of articles that name none.",
    "site.description": "One line describing the site, in feeds and the OPML.",
    "content.folder": "Folder of Markdown articles (both formats), read recursively.",
    "content.date_format": "strptime format of dates in export-format articles.",
    "content.cache": "Cache of parsed articles, so a rebuild reads only changed files.",
    "content.summary_length": "Characters of an article's summary (in feeds and digests) when it gives none.",
    "categories.title": "Display name of the category.",
    "categories.description": "One line describing the category, in its feed and page.",
    "categories.aliases": "Other names articles may use for this category; they are merged into it.",
    "output.folder": "Folder the site is written to (serve it with nginx at scale).",
    "output.pages": "Also write the HTML pages; false writes only the feeds and the OPML.",
    "output.templates": "Folder of page templates (and `site.css`) replacing the built-in ones of the same name, file by file.",
    "feeds.formats": "Feed formats written for the site and every category.",
    "feeds.items": "Newest articles per feed.",
    "feeds.folder": "Folder for feeds under the output folder (also their URL path).",
    "feeds.workers": "Processes rendering a large build; unset means one per core.",
    "database.url": "SQLAlchemy URL: `sqlite:///PATH` (relative to the config file) or `postgresql+psycopg://USER@HOST/DB`.",
    "database.echo": "Log every SQL statement (debugging only).",
    "links.secret_env": "Environment variable holding the secret that signs links.",
    "links.previous_secrets_env": "Environment variable with retired secrets, comma-separated, still accepted after a rotation.",
    "links.confirm_max_age": "Seconds a confirmation link stays valid.",
    "links.preferences_max_age": "Seconds a preferences link stays valid (unsubscribe links never expire).",
    "digest.max_articles": "Most articles in one digest (the newest).",
    "digest.subject": "Jinja2 template of the subject line (`top` (the top headline), `site`, `count`, `hidden`, `categories`).",
    "digest.frequency": "Default frequency for new subscribers.",
    "digest.send_hour": "Default local hour (0-23) digests are sent at.",
    "digest.weekday": "Default day of weekly digests.",
    "digest.timezone": "Default timezone of new subscribers; unset means `[site] timezone`.",
    "email.css_inliner": "Library inlining CSS into the HTML part.",
    "email.list_id": "List-Id header value (RFC 2919); unset derives one from the mail domain.",
    "email.unsubscribe_mailto": "A mailto: address added to the List-Unsubscribe header, next to the one-click URL.",
    "email.templates": "Folder of templates overriding the built-in email templates.",
    "mail.backend": "`smtp` sends; `file` writes .eml files into `folder`; `console` prints; `memory` keeps them (tests).",
    "mail.from": "From header of every email.",
    "mail.reply_to": "Reply-To header, if replies should go elsewhere.",
    "mail.domain": "Domain used in Message-IDs (use your sending domain).",
    "mail.folder": "Where the file backend writes messages.",
    "smtp.host": "SMTP relay host.",
    "smtp.port": "SMTP relay port (587 with starttls, 465 with tls).",
    "smtp.security": "`starttls`, implicit `tls`, or `none` (only for a relay on localhost).",
    "smtp.username": "Login user; unset sends without logging in.",
    "smtp.password_env": "Environment variable holding the SMTP password.",
    "smtp.timeout": "Seconds to wait for the server before a delivery is retried.",
    "smtp.connections": "Parallel SMTP connections.",
    "smtp.rate": "Most messages per second over all connections; unset means no limit.",
    "smtp.max_per_connection": "Messages sent on one connection before it is renewed.",
    "smtp.ehlo_name": "Name announced in EHLO; unset uses this machine's FQDN.",
    "smtp.ca_file": "PEM file of a private CA to trust for the relay's certificate.",
    "outbox.retry_factor": "Each retry waits this many times longer than the one before.",
    "outbox.max_attempts": "Attempts before a delivery is given up as failed.",
    "outbox.in_flight": "After a crash, a delivery that was being sent is sent again (`resend`) or marked failed (`fail`).",
    "schedule.enabled": "Run the scheduler in `syndicate run` (false: HTTP only, as `--no-scheduler`).",
    "schedule.rebuild_interval": "Seconds between feed rebuilds (incremental: nothing is written when nothing changed).",
    "schedule.digest_interval": "Seconds between looks for due digests (at most 3600 is used: it runs at least hourly).",
    "schedule.retry_interval": "Seconds between runs of the outbox's due retries.",
    "schedule.misfire_grace": "Seconds a missed run (and a digest missed during downtime) may be late and still happen, once; later ones are skipped and logged.",
    "schedule.prune_after_days": "Run records older than this are pruned (daily).",
    "schedule.lease_seconds": "Lease of the one scheduler per database; renewed every third of it; a standby takes over when it expires.",
    "http.host": "Address `syndicate run` listens on (`--host`).",
    "http.port": "Port `syndicate run` listens on (`--port`; 0 picks a free one).",
    "http.admin_token_env": "Environment variable holding the admin API's bearer token.",
    "admin.session_minutes": "How long a console sign-in lasts before it asks for the token again.",
    "admin.users": "Console users besides the admin token: `[[admin.users]]` with `name` and `password_hash` (argon2, from `syndicate admin hash-password`).",
    "http.max_body_bytes": "Largest request body accepted.",
    "http.confirmations_per_hour": "Confirmation emails per address per hour, at most.",
    "http.generate_missing_secrets": "Demo only: generate a missing link secret and admin token once into files under var/ (mode 0600).",
    "logging.level": "Least severe level logged.",
}

# Examples where the default is empty or a poor illustration; every other key's example is its default.
EXAMPLES: dict[str, Any] = {
    "site.title": "The Daily Example",
    "site.base_url": "https://news.example.org",
    "site.timezone": "Europe/Paris",
    "categories.title": "Sports",
    "categories.description": "Every match, every result.",
    "categories.aliases": ["sport", "athletics"],
    "feeds.formats": ["rss", "atom"],
    "feeds.workers": 4,
    "database.url": "postgresql+psycopg://syndicate@db.internal/syndicate",
    "digest.frequency": "weekly",
    "digest.weekday": "friday",
    "digest.timezone": "America/New_York",
    "email.list_id": "news.example.org",
    "email.unsubscribe_mailto": "unsubscribe@news.example.org",
    "email.templates": "templates/email",
    "output.templates": "templates/site",
    "mail.backend": "smtp",
    "mail.from": "The Daily Example <digest@news.example.org>",
    "mail.reply_to": "editors@news.example.org",
    "mail.domain": "news.example.org",
    "smtp.host": "smtp.example.net",
    "smtp.username": "digest@news.example.org",
    "smtp.rate": 20.0,
    "smtp.ehlo_name": "mail.news.example.org",
    "smtp.ca_file": "/etc/ssl/private-ca.pem",
    "smtp.domain_rate": {"gmail.com": 20.0, "yahoo.com": 10.0},
    "http.host": "0.0.0.0",
    "http.trusted_proxies": ["127.0.0.1", "::1"],
    "logging.level": "WARNING",
    "sources.url": "https://gardennotes.example/feed/",
    "sources.categories": ["garden"],
    "sources.title": "Garden Notes",
    "sources.include": "(?i)tomato|compost",
    "sources.exclude": "(?i)sponsored",
    "websub.hubs": ["https://pubsubhubbub.appspot.com/"],
}


@dataclass(frozen=True)
class ConfigKey:
    section: str
    key: str
    kind: str
    default: Any
    description: str | None
    example: Any

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


def _section_model(annotation: Any) -> type[BaseModel]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return typing.get_args(annotation)[-1]  # dict[str, CategorySettings]


def _describe_type(annotation: Any) -> str:
    """A reader's name for a field type: `integer`, `one of "a", "b"`, `list of strings`, `path (optional)`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _describe_type(args[0])
    if origin in (typing.Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        return f"{_describe_type(real[0])}, optional"
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin is tuple:
        inner = _describe_type(args[0])
        return f"list of {inner}" if inner.startswith("one of") else f"list of {inner}s"
    names = {str: "string", int: "integer", float: "number", bool: "true or false", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _limits(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        if isinstance(item, Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, Le):
            parts.append(f"≤ {item.le}")
    return f" ({', '.join(parts)})" if parts else ""


def config_keys() -> Iterator[ConfigKey]:
    """Every key of every section, in the order syndicate/config.py declares them."""
    for section, section_field in Settings.model_fields.items():
        if section == "path":
            continue
        for name, field in _section_model(section_field.annotation).model_fields.items():
            key = field.alias or name
            full = f"{section}.{key}"
            default = field.default
            yield ConfigKey(
                section, key, _describe_type(field.annotation) + _limits(field), default,
                field.description or DESCRIPTIONS.get(full),
                EXAMPLES.get(full, default),
            )


def undocumented() -> list[str]:
    """Keys with neither a Field description nor an entry in DESCRIPTIONS."""
    return [key.name for key in config_keys() if not key.description]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value, ensure_ascii=False)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The whole of docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m syndicate.docs` from syndicate/config.py: edit the descriptions there"
        " (or in syndicate/docs.py), not this file. -->",
        "",
        "syndicate reads one TOML file: `--config PATH`, else `$SYNDICATE_CONFIG`, else `config/syndicate.toml`.",
        "Every key is optional; a missing one takes the default below. Unknown keys and bad values are errors,",
        "all reported at once with the section and key. Relative paths are relative to the config file's folder.",
        "Secrets (link-signing secret, admin token, SMTP password) never go in the file: the file names the",
        "environment variables that hold them.",
        "",
    ]
    by_section: dict[str, list[ConfigKey]] = {}
    for key in config_keys():
        by_section.setdefault(key.section, []).append(key)
    for section, keys in by_section.items():
        table = f"{section}.{NAMED_TABLES[section]}" if section in NAMED_TABLES else section
        lines += [f"## [{section}]", "", SECTIONS.get(section, ""), "",
                  "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for key in keys:
            default = "(unset)" if key.default is None else "(required)" if key.default is PydanticUndefined else f"`{_cell(toml_value(key.default))}`"
            lines.append(f"| `{key.key}` | {_cell(key.kind)} | {default} | {_cell(key.description or 'UNDOCUMENTED')} |")
        lines += ["", "Example:", "", "```toml", f"[{table}]"]
        lines += [f"{key.key} = {toml_value(key.example)}" for key in keys if key.example is not None]
        lines += ["```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syndicate.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="file to write (default: docs/configuration.md)")
    args = parser.parse_args(argv)
    missing = undocumented()
    if missing:
        print(f"undocumented configuration keys: {', '.join(missing)} "
              "(give them Field(description=...) or an entry in syndicate/docs.py DESCRIPTIONS)", file=sys.stderr)
        return 1
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python -m syndicate.docs", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

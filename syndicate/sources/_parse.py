"""Reads a fetched feed into items: RSS 0.9x/1.0/2.0 and Atom through feedparser (imported here only), JSON Feed 1.0/1.1 by hand.

Every item's HTML is sanitised by the same nh3 cleaner as local articles; every text is
bounded. What cannot be read becomes a FeedError with the reason, never a partial guess
that would replace good items.
"""

from __future__ import annotations

import calendar
import html
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import feedparser

from syndicate.content import make_xml_safe, sanitize_html

log = logging.getLogger(__name__)

MAX_ITEMS = 1000  # items read from one document, whatever it holds
MAX_TITLE = 500
MAX_HTML = 512 * 1024  # one item's HTML


# A numeric character reference, and an XML declaration's encoding (see _readable).
_CHARREF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")
_DECLARED_ENCODING = re.compile(rb"""(\s*<\?xml[^>]*?)\sencoding\s*=\s*(["'])([^"'>]*)\2""")


class FeedError(Exception):
    """The document is not a feed we can read (the message says why)."""


@dataclass(frozen=True)
class Enclosure:
    url: str
    media_type: str
    length: int | None

    def __post_init__(self) -> None:
        make_xml_safe(self, ("url", "media_type"))


@dataclass(frozen=True)
class RemoteItem:
    """One item as the remote feed has it (HTML already sanitised; dates as given, None if absent or
    invalid). No text holds what XML cannot carry: a NUL (which PostgreSQL's text cannot hold either) or
    a lone surrogate in one item would fail its whole feed's store."""

    guid: str | None
    link: str | None
    title: str
    author: str | None
    published: datetime | None
    updated: datetime | None
    content_html: str  # the full content, or "" when the feed gives only a summary
    summary_html: str
    enclosures: tuple[Enclosure, ...] = ()

    def __post_init__(self) -> None:
        make_xml_safe(self, ("guid", "link", "title", "author", "content_html", "summary_html"))


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    link: str | None
    format: str  # "rss20", "atom10", "json11", ... as feedparser names them
    items: tuple[RemoteItem, ...]
    warning: str | None = None  # a feed read despite a problem (feedparser's "bozo" reason)

    def __post_init__(self) -> None:
        make_xml_safe(self, ("title", "link", "warning"))


def parse_feed(body: bytes, *, content_type: str = "", url: str = "") -> ParsedFeed:
    """The items of `body`, a feed document; FeedError if it is none."""
    if _looks_like_json(body, content_type):
        return _parse_json_feed(body)
    parsed = feedparser.parse(_readable(body), response_headers={"content-location": url, "content-type": content_type or "application/xml"},
                              sanitize_html=False, resolve_relative_uris=True)
    problem = parsed.get("bozo_exception")
    if not parsed.get("version"):
        reason = f": {_short(problem)}" if problem else ""
        raise FeedError(f"not an RSS, Atom or JSON feed{reason}")
    if problem and not parsed.entries:
        raise FeedError(f"malformed feed: {_short(problem)}")
    feed = parsed.feed
    items = tuple(_item(entry) for entry in parsed.entries[:MAX_ITEMS])
    warning = f"feed read despite: {_short(problem)}" if problem and not isinstance(problem, feedparser.CharacterEncodingOverride) else None
    return ParsedFeed(_text(feed.get("title")), feed.get("link"), parsed.version, items, warning)


def _readable(body: bytes) -> bytes:
    """`body` without what makes feedparser fail on the whole document (one such byte in one item would
    cost every item): a character reference to a surrogate or beyond U+10FFFF becomes U+FFFD, and an
    XML declaration naming its encoding in other than ASCII loses that name (the bytes are sniffed)."""
    declared = _DECLARED_ENCODING.match(body, 0, 1024)
    if declared is not None and not declared.group(3).isascii():
        body = declared.group(1) + body[declared.end():]
    if b"&#" not in body:
        return body

    def checked(reference: re.Match[bytes]) -> bytes:
        digits = reference.group(1) or reference.group(2)
        value = int(digits, 16 if reference.group(1) else 10) if len(digits.lstrip(b"0")) <= 8 else 0x110000
        return b"&#xFFFD;" if 0xD800 <= value <= 0xDFFF or value > 0x10FFFF else reference.group(0)
    return _CHARREF.sub(checked, body)


def _short(problem: object) -> str:
    return str(problem).splitlines()[0][:200] if problem else ""


def _text(value: object, limit: int = MAX_TITLE) -> str | None:
    """Plain text of a title: feedparser leaves entities and stray tags in some feeds."""
    if not isinstance(value, str):
        return None
    text = " ".join(html.unescape(value).split())
    return text[:limit] or None


def _html(value: str | None) -> str:
    if not value:
        return ""
    return sanitize_html(value[:MAX_HTML]).strip()


def _when(struct: object) -> datetime | None:
    """feedparser's parsed date (a UTC struct_time), or None when it had none it could read."""
    if struct is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(struct), UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _item(entry: feedparser.FeedParserDict) -> RemoteItem:
    contents = entry.get("content") or []
    full = max((c.get("value", "") for c in contents), key=len, default="")
    summary = entry.get("summary", "")
    if full and full == summary:  # RSS with only <description>: feedparser gives it as both
        full = ""
    enclosures = []
    for link in entry.get("links", []):
        if link.get("rel") == "enclosure" and str(link.get("href", "")).startswith(("http://", "https://")):
            length = str(link.get("length", ""))
            enclosures.append(Enclosure(link["href"], link.get("type", ""), int(length) if length.isdigit() else None))
    link = entry.get("link")
    return RemoteItem(
        guid=(entry.get("id") or None),
        link=link if isinstance(link, str) and link.startswith(("http://", "https://")) else None,
        title=_text(entry.get("title")) or "",
        author=_text(entry.get("author")),
        # dict.get: feedparser's own get() answers for `updated_parsed` with the published date.
        published=_when(dict.get(entry, "published_parsed")),
        updated=_when(dict.get(entry, "updated_parsed")),
        content_html=_html(full),
        summary_html=_html(summary),
        enclosures=tuple(enclosures[:10]),
    )


# ---------------------------------------------------------------- JSON Feed

def _looks_like_json(body: bytes, content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind in ("application/feed+json", "application/json") or body.lstrip()[:1] == b"{"


def _json_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _json_author(item: dict, feed: dict) -> str | None:
    """The item's authors (1.1), else its author (1.0), else the feed's: their names."""
    authors = _list(item.get("authors")) or ([item["author"]] if isinstance(item.get("author"), dict) else None) \
        or _list(feed.get("authors")) or ([feed["author"]] if isinstance(feed.get("author"), dict) else [])
    names = [str(a["name"]) for a in authors if isinstance(a, dict) and isinstance(a.get("name"), str)]
    return _text(", ".join(names)) if names else None


def _list(value: object) -> list:
    """A JSON array where the format has one; anything else (a number, a text) as none: one odd field
    never costs the item, nor the feed its other items."""
    return value if isinstance(value, list) else []


def _parse_json_feed(body: bytes) -> ParsedFeed:
    try:
        feed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise FeedError(f"malformed JSON Feed: {e}") from None
    except RecursionError:
        raise FeedError("malformed JSON Feed: nested deeper than it can be read") from None
    if not isinstance(feed, dict) or not str(feed.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise FeedError("not a JSON Feed (no https://jsonfeed.org/version/ \"version\")")
    rows = feed.get("items")
    if not isinstance(rows, list):
        raise FeedError("JSON Feed without an \"items\" list")
    items = []
    for row in rows[:MAX_ITEMS]:
        if not isinstance(row, dict):
            continue
        url = row.get("url") if isinstance(row.get("url"), str) else None
        text = row.get("content_text") if isinstance(row.get("content_text"), str) else ""
        content = row.get("content_html") if isinstance(row.get("content_html"), str) else ""
        if not content and text:
            content = "".join(f"<p>{html.escape(p)}</p>" for p in text[:MAX_HTML].split("\n\n") if p.strip())
        summary = row.get("summary") if isinstance(row.get("summary"), str) else ""
        attachments = [a for a in _list(row.get("attachments")) if isinstance(a, dict) and str(a.get("url", "")).startswith(("http://", "https://"))]
        items.append(RemoteItem(
            guid=str(row["id"]) if row.get("id") not in (None, "") else None,
            link=url if url and url.startswith(("http://", "https://")) else None,
            title=_text(row.get("title")) or "",
            author=_json_author(row, feed),
            published=_json_date(row.get("date_published")),
            updated=_json_date(row.get("date_modified")),
            content_html=_html(content),
            summary_html=_html(f"<p>{html.escape(summary)}</p>" if summary else ""),
            enclosures=tuple(Enclosure(a["url"], str(a.get("mime_type", "")),
                                       a["size_in_bytes"] if isinstance(a.get("size_in_bytes"), int) else None)
                             for a in attachments[:10]),
        ))
    version = str(feed["version"]).rsplit("/", 1)[-1].replace(".", "")
    return ParsedFeed(_text(feed.get("title")), feed.get("home_page_url") if isinstance(feed.get("home_page_url"), str) else None,
                      f"json{version}", tuple(items))

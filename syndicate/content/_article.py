"""Parses one article file, in the export format or with YAML front matter, into an Article."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import PurePosixPath
from zoneinfo import ZoneInfo

from syndicate.content._checks import check_category_name, check_date, check_size, load_front_matter, shown
from syndicate.content._markdown import paragraphs, render_markdown
from syndicate.content._model import Article, ArticleRef, Category
from syndicate.content._text import cut_at_word, plain_text, slugify
from syndicate.errors import ContentError

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*+])\s+(.*?)\s*$")
_BYLINE = re.compile(r"^\s*by\s+(\S.*?)\s*$", re.IGNORECASE)
_SECTIONS = {
    "description": "description",
    "body": "description",
    "category": "category",
    "categories": "category",
    "date created": "date",
    "date": "date",
    "created": "date",
}
_FORMAT_HINTS = {"%m": "MM", "%d": "DD", "%Y": "YYYY", "%y": "YY", "%H": "HH", "%M": "MM", "%b": "Mon", "%B": "Month"}


@dataclass(frozen=True)
class ReaderOptions:
    """What the reader needs from the configuration (hashable: it keys the cache)."""

    timezone: str = "UTC"
    default_author: str = "Syndicate"
    date_format: str = "%m/%d/%Y"
    summary_length: int = 300


def format_hint(date_format: str) -> str:
    """`%m/%d/%Y` -> `MM/DD/YYYY`, for error messages."""
    for code, hint in _FORMAT_HINTS.items():
        date_format = date_format.replace(code, hint)
    return date_format


def decode(path: PurePosixPath, raw: bytes) -> str:
    """UTF-8 text of `raw` (BOM dropped, CRLF and CR folded to LF), or a ContentError."""
    if not raw.strip():
        raise ContentError(path, 1, "empty file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ContentError(path, line, f"not UTF-8 text (invalid byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ContentError(path, 1, "empty file")
    return text


def parse_article(rel: PurePosixPath, raw: bytes, options: ReaderOptions) -> Article:
    """The Article in file `rel` (its path relative to the content folder) with bytes `raw`.

    Raises ContentError, and nothing else, for any content however broken.
    """
    try:
        check_size(rel, len(raw))
        text = decode(rel, raw)
        lines = text.split("\n")
        first = next(i for i, line in enumerate(lines) if line.strip())
        if lines[first].strip() == "---":
            fields = _front_matter(rel, lines, first, options)
        else:
            fields = _export_format(rel, lines, options)
        return _build(rel, raw, fields, options)
    except ContentError:
        raise
    except Exception as e:  # a bug of ours must still name the file, never stop the other articles
        raise ContentError(rel, 1, f"cannot read article: {type(e).__name__}: {str(e)[:200]}") from e


@dataclass
class _Fields:
    title: str
    body: str
    categories: list[str]
    published: datetime
    author: str | None = None
    updated: datetime | None = None
    summary: str | None = None
    id: str | None = None
    slug: str | None = None
    url: str | None = None
    image: str | None = None
    category_line: int = 1


def _heading(line: str) -> str | None:
    if "#" not in line[:4]:  # most lines: no regex needed
        return None
    match = _HEADING.match(line)
    return match.group(2) if match else None


def _section(line: str) -> str | None:
    heading = _heading(line)
    if heading is None:
        return None
    return _SECTIONS.get(heading.strip().rstrip(":").strip().lower())


def _export_format(rel: PurePosixPath, lines: list[str], options: ReaderOptions) -> _Fields:
    """`## Title`, `### Description` + body + `by NAME`, `### Category` list, `### Date Created`."""
    sections: dict[str, tuple[int, list[str]]] = {}
    title: tuple[int, str] | None = None
    current: str | None = None
    body_start: list[str] = []
    for number, line in enumerate(lines, start=1):
        section = _section(line) if "#" in line[:4] else None  # most lines are text: no call
        if section is not None:
            if section in sections:
                raise ContentError(rel, number, f"second '{line.strip()}' section")
            current = section
            sections[section] = (number, [])
            continue
        if current is None:
            heading = _heading(line) if "#" in line[:4] else None
            if title is None and heading:
                title = (number, heading.strip())
            elif title is not None:
                body_start.append(line)
            elif line.strip():
                raise ContentError(rel, number, "missing title (expected a '## Title' heading before the text)")
            continue
        sections[current][1].append(line)
    if title is None or not title[1]:
        raise ContentError(rel, title[0] if title else 1, "missing title (expected a '## Title' heading)")
    body_lines = body_start + sections.get("description", (0, []))[1]
    author = None
    nonblank = [i for i, line in enumerate(body_lines) if line.strip()]
    if nonblank:
        match = _BYLINE.match(body_lines[nonblank[-1]])
        if match:
            author = match.group(1)
            del body_lines[nonblank[-1]]
    if "category" not in sections:
        raise ContentError(rel, len(lines), "missing '### Category' section")
    category_line, category_lines = sections["category"]
    categories = []
    for offset, line in enumerate(category_lines, start=1):
        if not line.strip():
            continue
        match = _LIST_ITEM.match(line)
        if not match or not match.group(1):
            raise ContentError(rel, category_line + offset, f"expected a numbered list item under 'Category', got {shown(line.strip())}")
        categories.append(match.group(1))
    if not categories:
        raise ContentError(rel, category_line, "no category (expected a numbered list under 'Category')")
    if "date" not in sections:
        raise ContentError(rel, len(lines), "missing '### Date Created' section")
    date_line, date_lines = sections["date"]
    found = [(date_line + offset, line.strip()) for offset, line in enumerate(date_lines, start=1) if line.strip()]
    if not found:
        raise ContentError(rel, date_line, "missing date under 'Date Created'")
    number, value = found[0]
    try:
        parsed = datetime.strptime(value, options.date_format)
    except ValueError:
        raise ContentError(
            rel, number, f"impossible date {shown(value)} (expected {format_hint(options.date_format)})"
        ) from None
    published = check_date(rel, number, "Date Created", parsed.replace(tzinfo=ZoneInfo(options.timezone)))
    return _Fields(
        title=title[1], body="\n".join(body_lines).strip("\n"), categories=categories,
        published=published, author=author, category_line=category_line,
    )


def _front_matter(rel: PurePosixPath, lines: list[str], first: int, options: ReaderOptions) -> _Fields:
    """YAML between `---` lines (Hugo, Jekyll, Pelican), then the Markdown body."""
    try:
        end = next(i for i in range(first + 1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        raise ContentError(rel, first + 1, "front matter not closed (expected a closing '---' line)") from None
    start_line = first + 1
    meta = load_front_matter(rel, "\n".join(lines[first + 1:end]), start_line + 1)
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise ContentError(rel, start_line, "front matter must be a mapping of keys to values")
    meta = {str(k).lower(): v for k, v in meta.items()}

    def line_of(key: str) -> int:
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*:", re.IGNORECASE)
        for i in range(first + 1, end):
            if pattern.match(lines[i]):
                return i + 1
        return start_line

    def text(key: str, required: bool = False) -> str | None:
        value = meta.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise ContentError(rel, line_of(key), f"missing {key} in front matter")
            return None
        if isinstance(value, (dict, list)):
            raise ContentError(rel, line_of(key), f"{key}: expected text, got a {type(value).__name__}")
        return str(value).strip()

    title = text("title", required=True)
    assert title is not None  # required: text() raised otherwise
    if "date" not in meta or meta["date"] in (None, ""):
        raise ContentError(rel, line_of("date"), "missing date in front matter")
    published = _front_matter_date(rel, line_of("date"), "date", meta["date"], options)
    updated = None
    for key in ("updated", "lastmod", "modified"):
        if meta.get(key) not in (None, ""):
            updated = _front_matter_date(rel, line_of(key), key, meta[key], options)
            break
    raw_categories = meta.get("categories", meta.get("category"))
    key = "categories" if "categories" in meta else "category"
    if isinstance(raw_categories, str):
        raw_categories = [part for part in raw_categories.split(",")]
    if raw_categories is None:
        raw_categories = []
    if not isinstance(raw_categories, list):
        raise ContentError(rel, line_of(key), f"{key}: expected a list of names, got {type(raw_categories).__name__}")
    categories = []
    for item in raw_categories:
        if isinstance(item, (dict, list)) or item is None:
            raise ContentError(rel, line_of(key), f"{key}: expected a list of names, found {shown(item)}")
        if str(item).strip():
            categories.append(str(item).strip())
    if not categories:
        raise ContentError(rel, line_of(key), "no category (front matter needs categories: [...])")
    return _Fields(
        title=title,
        body="\n".join(lines[end + 1:]).strip("\n"),
        categories=categories,
        published=published,
        updated=updated,
        author=text("author"),
        summary=text("summary") or text("description"),
        id=text("id"),
        slug=text("slug"),
        url=text("url"),
        image=text("image"),
        category_line=line_of(key),
    )


def _front_matter_date(rel: PurePosixPath, line: int, key: str, value: object, options: ReaderOptions) -> datetime:
    zone = ZoneInfo(options.timezone)
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time())
    elif isinstance(value, str):
        candidate = value.strip()
        try:
            parsed = datetime.fromisoformat(candidate.replace("Z", "+00:00"))
        except ValueError:
            try:
                parsed = datetime.strptime(candidate, options.date_format)
            except ValueError:
                raise ContentError(
                    rel, line, f"{key}: impossible date {shown(candidate)} (expected ISO 8601 such as 2026-03-05T09:30:00+01:00)"
                ) from None
    else:
        raise ContentError(rel, line, f"{key}: expected a date, got {shown(value)}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return check_date(rel, line, key, parsed)


def _summary(body_html: str, limit: int) -> str:
    for paragraph in paragraphs(body_html):
        text = plain_text(paragraph)
        if text:
            return cut_at_word(text, limit)
    return ""


def legacy_slug(article: Article | ArticleRef) -> str:
    """The slug an article had when slugs were made from its id (folder and file name): its old URL."""
    return slugify(article.id.replace("/", "-")) or article.slug


def _build(rel: PurePosixPath, raw: bytes, fields: _Fields, options: ReaderOptions) -> Article:
    derived_id = str(rel.with_suffix(""))
    article_id = fields.id or fields.slug or derived_id
    # The file's name (or front matter `slug`, else `id`), never its folder: folders organise the content, URLs
    # stay short. legacy_slug() gives the address an article had before, for the redirects.
    slug = slugify(fields.slug or fields.id or rel.stem)
    if not slug:
        slug = "a-" + hashlib.sha1(article_id.encode()).hexdigest()[:12]
    categories: list[Category] = []
    for name in fields.categories:
        check_category_name(rel, fields.category_line, name)
        category_slug = slugify(name)
        if not category_slug:
            raise ContentError(rel, fields.category_line, f"category {shown(name)} has no letters or digits to make a slug from")
        if category_slug not in (c.slug for c in categories):
            categories.append(Category(category_slug, name))
    body_html = render_markdown(fields.body)
    if fields.url is not None and not fields.url.startswith(("http://", "https://")):
        raise ContentError(rel, 1, f"url: expected an absolute http(s) URL, got {shown(fields.url)}")
    if fields.image is not None and not fields.image.startswith(("http://", "https://")):
        raise ContentError(rel, 1, f"image: expected an absolute http(s) URL (emails cannot load others), got {shown(fields.image)}")
    return Article(
        id=article_id,
        slug=slug,
        title=fields.title,
        author=fields.author or options.default_author,
        published=fields.published,
        updated=max(fields.updated or fields.published, fields.published),
        categories=tuple(categories),
        body_html=body_html,
        summary=cut_at_word(plain_text(fields.summary), options.summary_length) if fields.summary else _summary(body_html, options.summary_length),
        source=str(rel),
        content_hash=hashlib.sha256(raw).hexdigest(),
        url=fields.url,
        image=fields.image,
    )

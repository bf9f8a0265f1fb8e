"""Writes the archive pages and feeds under the site's output folder: /archive/ (every issue),
/archive/{daily|weekly}/{period}/ (one issue: each category's articles), /archive/categories/{slug}/
and its RSS feed. Files are written only when their bytes change; pages of issues no longer known
are left alone (the archive only grows).

A `syndicate build` runs it after every site build, most of the time with nothing new to archive:
given a cheap stamp of the database (syndicate.storage.database_stamp), it records what it built
from under the var folder, and when the stamp, the pages' other inputs and the files are as the last
build left them, it neither opens the database (nor imports SQLAlchemy) nor renders a page."""

from __future__ import annotations

import hashlib
import html
import logging
import marshal
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from syndicate import __version__
from syndicate.archive._issues import ArchiveIssue, ArchiveItem
from syndicate.config import Settings
from syndicate.content import Article, Category, ContentSource, Corpus, CorpusMemory
from syndicate.site import SitePages, SiteUrls, compiled_templates, publish, site_info, template_fingerprint, write_atomic

if TYPE_CHECKING:
    from syndicate.storage import Database

log = logging.getLogger(__name__)

FREQUENCY_NAMES = {"daily": "Daily", "weekly": "Weekly"}
FEED_ITEMS = 50
STATE_FORMAT = 1


@dataclass(frozen=True)
class ArchiveReport:
    """What an archive build did."""

    issues: int
    collected: int
    written: tuple[str, ...]


@dataclass(frozen=True)
class IssueView:
    """An issue as its pages show it."""

    frequency_name: str
    label: str
    url: str
    summary: str
    sections: tuple[tuple[str, str, str, tuple[ArchiveItem, ...]], ...]  # slug, name, category page, items


def period_label(frequency: str, period: str) -> str:
    """"Saturday 5 December 2026", or "Week 49 of 2026 (30 November to 6 December)"."""
    if frequency == "weekly":
        year, week = int(period[:4]), int(period[6:])
        first, last = date.fromisocalendar(year, week, 1), date.fromisocalendar(year, week, 7)
        return f"Week {week} of {year} ({first.day} {first:%B} to {last.day} {last:%B})"
    day = date.fromisoformat(period)
    return f"{day:%A} {day.day} {day:%B %Y}"


def _view(issue: ArchiveIssue, names: dict[str, str], urls: SiteUrls) -> IssueView:
    sections = tuple((slug, names.get(slug, slug), urls.category(slug), items) for slug, items in issue.sections)
    count = sum(len(items) for *_, items in sections)
    summary = f"{count} {'article' if count == 1 else 'articles'} in " + ", ".join(name for _, name, _, _ in sections)
    return IssueView(FREQUENCY_NAMES.get(issue.frequency, issue.frequency), period_label(issue.frequency, issue.period),
                     urls.archive_issue(issue.frequency, issue.period), summary, sections)


def _category_feed(category: Category, issues: list[tuple[ArchiveIssue, IssueView]], pages: SitePages, urls: SiteUrls) -> bytes:
    """RSS 2.0: one item per issue that had this category, newest first."""
    rss = ElementTree.Element("rss", version="2.0")
    channel = ElementTree.SubElement(rss, "channel")
    ElementTree.SubElement(channel, "title").text = f"{pages.site.title}: {category.name} digests"
    ElementTree.SubElement(channel, "link").text = urls.archive_category(category.slug)
    ElementTree.SubElement(channel, "description").text = f"Every {category.name} digest {pages.site.title} has sent."
    ElementTree.SubElement(channel, "language").text = pages.site.language
    if issues:
        ElementTree.SubElement(channel, "lastBuildDate").text = format_datetime(issues[0][0].sent_at)
    for issue, view in issues[:FEED_ITEMS]:
        items = dict(issue.sections)[category.slug]
        link = f"{view.url}#section-{category.slug}"
        entry = ElementTree.SubElement(channel, "item")
        ElementTree.SubElement(entry, "title").text = f"{category.name}: {view.label} ({view.frequency_name.lower()})"
        ElementTree.SubElement(entry, "link").text = link
        ElementTree.SubElement(entry, "guid", isPermaLink="false").text = f"{link}|{issue.frequency}"
        ElementTree.SubElement(entry, "pubDate").text = format_datetime(max(i.first_sent_at for i in items))
        ElementTree.SubElement(entry, "description").text = "<ul>" + "".join(
            f'<li><a href="{html.escape(i.url)}">{html.escape(i.title)}</a></li>' for i in items) + "</ul>"
    ElementTree.indent(rss)
    return ElementTree.tostring(rss, encoding="utf-8", xml_declaration=True) + b"\n"


def build_archive(settings: Settings, source: ContentSource,
                  database: Database | Callable[[], AbstractContextManager[Database]], now: datetime, *,
                  output: Path | None = None, memory: CorpusMemory | None = None, corpus: Corpus | None = None,
                  database_stamp: Callable[[], tuple | None] = lambda: None) -> ArchiveReport:
    """Collect what was sent since the last build, then write every archive page and feed (`corpus`:
    the articles the site build just read, else read here).

    `database` is the database, or what opens it for the time of this build (and closes it after).
    `database_stamp` tells the database's content apart without opening it (None: it cannot, ask the
    database every time; `()`: there is no database yet, so nothing was ever sent). When the stamp is
    the one this build recorded last time (after its own writes), and the pages' other inputs (the
    categories, the settings, the templates, this code) and files are unchanged, nothing is done. A
    digest sent by another process in the instant between this build's collection and its stamp
    waits for the next change to the database to be archived (the collection's day of overlap still
    finds it then).
    """
    if corpus is None:
        corpus = source.read(memory=memory)
    urls = SiteUrls(settings.site.base_url, settings.feeds.folder)
    folder = Path(output or settings.output.folder).resolve()
    state_file = settings.var_folder / "build" / f"archive-{_digest(str(folder))[:12]}.marshal"
    context = _context(settings, corpus)
    last = _load_state(state_file)
    stamp = database_stamp()
    if stamp is not None and last is not None and (last["stamp"], last["context"]) == (stamp, context) \
            and _unchanged(folder, last["files"]):
        return ArchiveReport(last["issues"], 0, ())
    collected, issues = 0, list[ArchiveIssue]()
    if stamp != ():  # () is no database yet: nothing was ever sent, and a build does not create one
        with (database() if callable(database) else nullcontext(database)) as opened:
            collected, issues = _collect(opened, corpus, urls, ZoneInfo(settings.site.timezone), now)
    written, files = _write(settings, corpus, urls, folder, issues)
    _save_state(state_file, {"format": STATE_FORMAT, "stamp": database_stamp(), "context": context, "files": files,
                             "issues": len(issues)})
    if written:
        log.info("archive: %d issues, %d files written", len(issues), len(written))
    return ArchiveReport(len(issues), collected, tuple(written))


def _collect(database: Database, corpus: Corpus, urls: SiteUrls, zone: ZoneInfo, now: datetime) -> tuple[int, list[ArchiveIssue]]:
    from syndicate.archive._collect import collect_sent, load_issues  # SQLAlchemy: only when the database is asked

    collected = collect_sent(database, _ById(corpus), urls.article, zone, now)
    return collected, load_issues(database, {c.slug: i for i, c in enumerate(corpus.categories)})


class _ById(Mapping[str, Article]):
    """The corpus's articles by id, each made when looked up (a collection looks up those sent only)."""

    def __init__(self, corpus: Corpus) -> None:
        self._corpus, self._refs = corpus, {r.id: r for r in corpus.refs}

    def __getitem__(self, article_id: str) -> Article:
        return self._corpus.article(self._refs[article_id])

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)


def _write(settings: Settings, corpus: Corpus, urls: SiteUrls, folder: Path,
           issues: list[ArchiveIssue]) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """Render every archive page and feed; (the paths written, every path's size and mtime)."""
    names = {c.slug: c.name for c in corpus.categories}
    nav = tuple((c.slug, c.name, urls.category(c.slug)) for c in corpus.categories)
    pages = SitePages(site_info(settings.site, [str(hub) for hub in settings.websub.hubs]), urls, tuple(dict.fromkeys(settings.feeds.formats)), nav=nav,
                      archive_url=urls.archive(), overrides=settings.output.templates,
                      bytecode_cache=compiled_templates(settings.var_folder / "build"))  # those the site build compiled
    views = [(issue, _view(issue, names, urls)) for issue in issues]
    files: dict[str, bytes] = {}
    groups = [(f"{FREQUENCY_NAMES[f]} digests", [v for i, v in views if i.frequency == f]) for f in ("daily", "weekly")]
    archived = [c for c in corpus.categories if any(c.slug in dict(i.sections) for i in issues)]
    files[urls.archive_path() + "index.html"] = pages.page(
        "archive_index.html.j2", current="archive", groups=[g for g in groups if g[1]],
        categories=[(c.name, urls.archive_category(c.slug), urls.archive_feed(c.slug)) for c in archived])
    for issue, view in views:
        shown = [Category(slug, names.get(slug, slug)) for slug, _ in issue.sections]
        files[urls.archive_issue_path(issue.frequency, issue.period) + "index.html"] = pages.page(
            "archive_issue.html.j2", current="archive", subscribe_to=shown, issue=view)
    for category in archived:
        mine = [(i, v) for i, v in views if category.slug in dict(i.sections)]
        files[urls.archive_category_path(category.slug) + "index.html"] = pages.page(
            "archive_category.html.j2", current="archive", subscribe_to=[category], name=category.name,
            feed_url=urls.archive_feed(category.slug),
            issues=[(v.label + f" ({v.frequency_name.lower()})", f"{v.url}#section-{category.slug}", dict(i.sections)[category.slug])
                    for i, v in mine])
        files[urls.archive_feed_path(category.slug)] = _category_feed(category, mine, pages, urls)
    written, stats = [], {}
    for path, data in files.items():
        changed, stat = publish(folder / path, data)
        stats[path] = (stat.st_size, stat.st_mtime_ns)
        if changed:
            written.append(path)
    return written, stats


def _digest(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _context(settings: Settings, corpus: Corpus) -> str:
    """What the pages show besides the database's issues: the categories, the settings, the templates, this code."""
    return _digest(__version__, STATE_FORMAT, hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
                   template_fingerprint(overrides=settings.output.templates),
                   settings.site.model_dump_json(), settings.feeds.folder, settings.feeds.formats, [str(h) for h in settings.websub.hubs],
                   [(c.slug, c.name) for c in corpus.categories])


def _load_state(path: Path) -> dict | None:
    try:
        state = marshal.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, EOFError, ValueError, TypeError) as e:  # a lost state only costs a full archive build
        log.warning("archive state %s unreadable (%s); building the archive", path, e)
        return None
    return state if isinstance(state, dict) and state.get("format") == STATE_FORMAT else None


def _save_state(path: Path, state: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, marshal.dumps(state, 4))
    except OSError as e:
        log.warning("cannot write archive state %s: %s", path, e)


def _unchanged(folder: Path, files: Mapping[str, tuple[int, int]]) -> bool:
    """Whether every file the last build wrote is still there as it left it."""
    base = str(folder)
    for path, (size, mtime_ns) in files.items():
        try:
            stat = os.stat(f"{base}/{path}")
        except FileNotFoundError:
            return False
        if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
            return False
    return True

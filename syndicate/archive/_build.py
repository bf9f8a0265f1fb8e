"""Writes the archive pages and feeds under the site's output folder: /archive/ (every issue),
/archive/{daily|weekly}/{period}/ (one issue: each category's articles), /archive/categories/{slug}/
and its RSS feed. Files are written only when their bytes change; pages of issues no longer known
are left alone (the archive only grows)."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from syndicate.archive._collect import ArchiveIssue, ArchiveItem, collect_sent, load_issues
from syndicate.config import Settings
from syndicate.content import Category, ContentSource, Corpus, CorpusMemory
from syndicate.site import SitePages, SiteUrls, publish, site_info
from syndicate.storage import Database

log = logging.getLogger(__name__)

FREQUENCY_NAMES = {"daily": "Daily", "weekly": "Weekly"}
FEED_ITEMS = 50


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


def build_archive(settings: Settings, source: ContentSource, database: Database, now: datetime, *,
                  output: Path | None = None, memory: CorpusMemory | None = None,
                  corpus: Corpus | None = None) -> ArchiveReport:
    """Collect what was sent since the last build, then write every archive page and feed (`corpus`:
    the articles the site build just read, else read here)."""
    if corpus is None:
        corpus = source.read(memory=memory)
    urls = SiteUrls(settings.site.base_url, settings.feeds.folder)
    zone = ZoneInfo(settings.site.timezone)
    collected = collect_sent(database, {a.id: a for a in corpus.articles}, urls.article, zone, now)
    order = {c.slug: i for i, c in enumerate(corpus.categories)}
    issues = load_issues(database, order)
    names = {c.slug: c.name for c in corpus.categories}
    nav = tuple((c.slug, c.name, urls.category(c.slug)) for c in corpus.categories)
    pages = SitePages(site_info(settings), urls, tuple(dict.fromkeys(settings.feeds.formats)), nav=nav,
                      archive_url=urls.archive())
    folder = Path(output or settings.output.folder).resolve()
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
    written = []
    for path, data in files.items():
        changed, _ = publish(folder / path, data)
        if changed:
            written.append(path)
    if written:
        log.info("archive: %d issues, %d files written", len(issues), len(written))
    return ArchiveReport(len(issues), collected, tuple(written))

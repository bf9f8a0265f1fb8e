"""Writes feeds: RSS 2.0 and Atom 1.0 (through feedgen, imported here only), JSON Feed 1.1 and the OPML list.

Every text it is given is already XML-safe (Article, Category, SiteInfo and FeedSpec drop the
characters XML cannot carry when they are made). Every function returns the file's bytes and
depends only on its arguments, so the same articles always give the same bytes: no build time appears anywhere (feedgen
stamps `now` by default; it is overridden with the newest item's `updated`).
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from xml.etree import ElementTree

from syndicate import __version__
from syndicate.content import Article, Category, make_xml_safe
from syndicate.site._urls import SiteUrls

if TYPE_CHECKING:  # feedgen (and lxml) are imported when the first feed is rendered
    from feedgen.feed import FeedGenerator

GENERATOR = "syndicate"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
MEDIA_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml", "json": "application/feed+json"}
FORMAT_NAMES = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
# What an empty feed reports as `updated`: a fixed instant, so an empty feed is stable too.
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SiteInfo:
    """What every feed and page says about the site itself (XML-safe, like Article and Category)."""

    title: str
    description: str
    language: str
    author: str
    timezone: str = "UTC"
    hubs: tuple[str, ...] = ()  # WebSub hubs every feed announces

    def __post_init__(self) -> None:
        make_xml_safe(self, ("title", "description", "author"))


@dataclass(frozen=True)
class FeedSpec:
    """One feed's content: the site feed (`category` None) or one category's, newest first."""

    slug: str
    title: str
    description: str
    articles: tuple[Article, ...]
    category: Category | None = None

    def __post_init__(self) -> None:
        make_xml_safe(self, ("title", "description"))

    @property
    def updated(self) -> datetime:
        """The newest item's `updated`, never the build time."""
        return max((a.updated for a in self.articles), default=EMPTY_FEED_UPDATED)


def item_id(article: Article, urls: SiteUrls) -> str:
    """The article's id in every feed: a URN derived from the site and the article id only,
    so editing the title, body, slug or date never changes it."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{urls.base_url}/#article:{article.id}')}"


class ListedFeed(Protocol):
    """What an OPML list shows of a feed (a FeedSpec, or a feed as a build plans it)."""

    @property
    def slug(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def category(self) -> Category | None: ...
    @property
    def updated(self) -> datetime: ...


def page_url(spec: ListedFeed, urls: SiteUrls) -> str:
    return urls.home() if spec.category is None else urls.category(spec.category.slug)


def _generator(spec: FeedSpec, fmt: str, site: SiteInfo, urls: SiteUrls) -> FeedGenerator:
    from feedgen.feed import FeedGenerator

    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(urls.feed(spec.slug, fmt))
    fg.title(spec.title)
    fg.subtitle(spec.description)  # also the RSS <description>
    fg.link(href=urls.feed(spec.slug, fmt), rel="self", type=MEDIA_TYPES[fmt])
    for hub in site.hubs:  # WebSub (Atom; RSS gets them as atom:link through _HubLinks)
        fg.link(href=hub, rel="hub")
    fg.link(href=page_url(spec, urls), rel="alternate", type="text/html")  # last: RSS <link> is the last one
    if site.hubs and fmt == "rss":
        fg.register_extension("websub", _hub_extension(site.hubs), atom=False, rss=True)
    fg.language(site.language)
    fg.author(name=site.author)
    fg.generator(GENERATOR, version=__version__)
    fg.updated(spec.updated)  # also RSS lastBuildDate; feedgen's default is the clock
    if spec.category is not None:
        fg.category(term=spec.category.slug, label=spec.category.name, scheme=urls.home())
    for article in spec.articles:  # newest first, so append (feedgen prepends by default)
        _add_entry(fg, article, urls)
    return fg


def _add_entry(fg: FeedGenerator, article: Article, urls: SiteUrls) -> None:
    entry = fg.add_entry(order="append")
    entry.guid(item_id(article, urls), permalink=False)
    entry.title(article.title)
    entry.link(href=urls.article(article), rel="alternate", type="text/html")
    entry.content(article.body_html, type="html")  # RSS: content:encoded
    # The summary is plain text; RSS <description> is HTML, so it goes in escaped (Atom says type="html").
    summary = html.escape(article.summary or article.title, quote=False)
    entry.summary(summary, type="html")  # RSS: description
    entry.author(name=article.author)  # Atom; RSS <author> needs an e-mail, so dc:creator
    entry.dc.dc_creator(article.author)
    entry.published(article.published)  # RSS pubDate
    entry.updated(article.updated)
    for category in article.categories:
        entry.category(term=category.slug, label=category.name, scheme=urls.home())
    if article.source_name and article.source_url:  # an article from another site's feed
        entry.source(url=article.source_url, title=article.source_name)


def _hub_extension(hubs: tuple[str, ...]) -> type:
    """A feedgen extension writing `<atom:link rel="hub">` into an RSS channel (feedgen writes only rel="self" there)."""
    from feedgen.ext.base import BaseExtension

    class _HubLinks(BaseExtension):
        def extend_ns(self) -> dict[str, str]:
            return {"atom": "http://www.w3.org/2005/Atom"}

        def extend_rss(self, rss_feed):
            channel = rss_feed[0]
            for hub in hubs:
                link = channel.makeelement("{http://www.w3.org/2005/Atom}link", {"href": hub, "rel": "hub"})
                channel.insert(3, link)  # beside the rel="self" link, before the items
            return rss_feed

    return _HubLinks


def render_rss(spec: FeedSpec, site: SiteInfo, urls: SiteUrls) -> bytes:
    return _generator(spec, "rss", site, urls).rss_str(pretty=True) + b"\n"


def render_atom(spec: FeedSpec, site: SiteInfo, urls: SiteUrls) -> bytes:
    return _generator(spec, "atom", site, urls).atom_str(pretty=True) + b"\n"


def _json_item(article: Article, urls: SiteUrls) -> dict[str, object]:
    item: dict[str, object] = {
        "id": item_id(article, urls),
        "url": urls.article(article),
        "title": article.title,
        "content_html": article.body_html,
    }
    if article.summary:
        item["summary"] = article.summary
    item["date_published"] = article.published.isoformat()
    item["date_modified"] = article.updated.isoformat()
    item["authors"] = [{"name": article.author}]
    item["tags"] = [c.name for c in article.categories]
    if article.source_name and article.source_url:  # JSON Feed has no <source>: an extension object
        item["_source"] = {"title": article.source_name, "feed_url": article.source_url}
    return item


def render_json(spec: FeedSpec, site: SiteInfo, urls: SiteUrls) -> bytes:
    """JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/)."""
    feed = {
        "version": JSON_FEED_VERSION,
        "title": spec.title,
        "home_page_url": page_url(spec, urls),
        "feed_url": urls.feed(spec.slug, "json"),
        "description": spec.description,
        "language": site.language,
        "authors": [{"name": site.author}],
        "items": [_json_item(a, urls) for a in spec.articles],
    }
    if site.hubs:
        feed["hubs"] = [{"type": "WebSub", "url": hub} for hub in site.hubs]
    # Compact: the C encoder writes it (indented JSON goes through the pure-Python one, 3-4 times slower).
    return json.dumps(feed, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


RENDERERS: dict[str, Callable[[FeedSpec, SiteInfo, SiteUrls], bytes]] = {
    "rss": render_rss,
    "atom": render_atom,
    "json": render_json,
}


def render_feed(fmt: str, spec: FeedSpec, site: SiteInfo, urls: SiteUrls) -> bytes:
    """The bytes of `spec` as format `fmt` ("rss", "atom" or "json")."""
    return RENDERERS[fmt](spec, site, urls)


# OPML 2.0 defines `version` only for RSS ("RSS", "RSS1", "scriptingNews"); other formats leave it out.
OPML_VERSIONS = {"rss": "RSS"}


def render_opml(specs: Sequence[ListedFeed], fmt: str, site: SiteInfo, urls: SiteUrls, *, title: str | None = None) -> bytes:
    """OPML 2.0 listing each spec's feed in format `fmt` once, in the order given (site feed first):
    importing it subscribes a reader to every category exactly once."""
    opml = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(opml, "head")
    ElementTree.SubElement(head, "title").text = title or f"{site.title}: every category"
    updated = max((spec.updated for spec in specs), default=EMPTY_FEED_UPDATED)
    ElementTree.SubElement(head, "dateModified").text = updated.strftime("%a, %d %b %Y %H:%M:%S %z")
    ElementTree.SubElement(head, "ownerName").text = site.author
    ElementTree.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ElementTree.SubElement(opml, "body")
    for spec in specs:
        attributes = {"type": "rss", "text": spec.title, "title": spec.title}
        if fmt in OPML_VERSIONS:
            attributes["version"] = OPML_VERSIONS[fmt]
        attributes |= {"xmlUrl": urls.feed(spec.slug, fmt), "htmlUrl": page_url(spec, urls)}
        ElementTree.SubElement(body, "outline", attributes)
    ElementTree.indent(opml)
    return ElementTree.tostring(opml, encoding="utf-8", xml_declaration=True) + b"\n"

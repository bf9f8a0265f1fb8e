"""Renders the site's HTML pages (front page, category pages, article pages) from Jinja2 templates.

Every page links its feeds with `<link rel="alternate">` so browsers and feed readers
discover them. Pages depend only on their arguments: the same articles give the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from syndicate.content import Article, Category
from syndicate.errors import ConfigError
from syndicate.site._feeds import FORMAT_NAMES, MEDIA_TYPES, SiteInfo
from syndicate.site._urls import SITE_FEED, SiteUrls

if TYPE_CHECKING:  # Jinja2 is imported when the first page is rendered: a rebuild with nothing to render skips it
    import jinja2

TEMPLATE_FOLDER = Path(__file__).resolve().parent.parent / "templates" / "site"
TEMPLATES = ("base.html.j2", "_nav.html.j2", "_feeds.html.j2", "_article_list.html.j2", "_subscribe.html.j2", "index.html.j2",
             "category.html.j2", "article.html.j2", "not_found.html.j2", "site.css",
             "archive_index.html.j2", "archive_issue.html.j2", "archive_category.html.j2")
STYLESHEET = "site.css"  # the one stylesheet, shared with the subscriber pages (syndicate.web.pages)


@dataclass(frozen=True)
class FeedLink:
    """One feed as a page links it."""

    title: str
    url: str
    media_type: str
    format_name: str


@dataclass(frozen=True)
class FeedMarkup:
    """The feed links of a page, rendered: `<link rel="alternate">` lines for the head, anchors for the footer."""

    head: Markup
    footer: Markup


@dataclass(frozen=True)
class SubscribeBox:
    """The subscribe box of a page: what it says and the categories it preselects."""

    heading: str
    text: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class CategoryEntry:
    """A category as the front page lists it."""

    category: Category
    count: int
    feeds: tuple[FeedLink, ...]


def template_fingerprint(folder: Path = TEMPLATE_FOLDER, overrides: Path | None = None) -> str:
    """A hash of every template's bytes (each from `overrides` where that folder has it): a changed
    template means every page is rendered again."""
    digest = hashlib.sha256()
    for name in TEMPLATES:
        digest.update(name.encode() + b"\0" + template_path(name, folder, overrides).read_bytes() + b"\0")
    return digest.hexdigest()


def compiled_templates(state: Path) -> Path:
    """Where the pages' compiled templates are kept in a build's state folder (the site's and the archive's)."""
    return state / "templates"


def template_path(name: str, folder: Path = TEMPLATE_FOLDER, overrides: Path | None = None) -> Path:
    """The file a page template (or the stylesheet) is read from: `overrides`' own if it has one."""
    if overrides is not None and (overrides / name).is_file():
        return overrides / name
    return folder / name


def check_overrides(overrides: Path | None) -> None:
    """ConfigError unless `overrides` ([output] templates) is a folder holding only page templates by
    their names (hidden files aside)."""
    if overrides is None:
        return
    if not overrides.is_dir():
        raise ConfigError([f"[output] templates: {overrides} is not a folder"],
                          hint="set it to a folder of page templates to override (base.html.j2, article.html.j2, site.css ...)")
    unknown = sorted(p.name for p in overrides.iterdir()
                     if p.is_file() and p.name not in TEMPLATES and not p.name.startswith("."))  # .DS_Store and the like
    if unknown:
        raise ConfigError([f"[output] templates: {overrides / unknown[0]} is not one of the page templates"],
                          hint=f"the templates a folder can override: {', '.join(TEMPLATES)}")


@dataclass(frozen=True)
class SitePages:
    """Renders pages for one site; `formats` are the feed formats pages link to."""

    site: SiteInfo
    urls: SiteUrls
    formats: tuple[str, ...]
    folder: Path = TEMPLATE_FOLDER
    # The navigation: (slug, name, url) of each category, in the site's order.
    nav: tuple[tuple[str, str, str], ...] = ()
    archive_url: str | None = None
    # Where compiled templates are kept between builds (compiling them costs ~30 ms per build).
    bytecode_cache: Path | None = None
    # [output] templates: a folder whose templates replace the built-in ones of the same name.
    overrides: Path | None = None
    _environment: list[jinja2.Environment] = field(init=False, repr=False, compare=False, default_factory=list)
    # Feed links rendered once per feed group (every page repeats them): slug -> (head, footer).
    _feed_markup: dict[str, tuple[str, str]] = field(init=False, repr=False, compare=False, default_factory=dict)
    # The navigation rendered once per `current` (every page repeats it): current -> HTML.
    _nav_markup: dict[str, Markup] = field(init=False, repr=False, compare=False, default_factory=dict)
    # What every page shows alike (the site, its URLs, the navigation's entries), made once.
    _shared: dict[str, object] = field(init=False, repr=False, compare=False, default_factory=dict)
    # Each category's link on an article page: slug -> HTML.
    _tag_links: dict[str, str] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._shared.update(site=self.site, urls=self.urls, home_url=self.urls.home(), opml_url=self.urls.opml(),
                            stylesheet_url=self.urls.asset(STYLESHEET), signup_url=self.urls.signup(), nav=self.nav,
                            archive_url=self.archive_url)

    @property
    def environment(self) -> jinja2.Environment:
        """The Jinja2 environment, made on first use."""
        if not self._environment:
            self._environment.append(self._make_environment())
        return self._environment[0]

    def prepare(self) -> None:
        """Make the template environment now (a process about to fork its renderers: they share it)."""
        _ = self.environment

    def _make_environment(self) -> jinja2.Environment:
        import jinja2

        cache = None
        if self.bytecode_cache is not None:
            try:
                self.bytecode_cache.mkdir(parents=True, exist_ok=True)
                cache = jinja2.FileSystemBytecodeCache(str(self.bytecode_cache))
            except OSError:  # only slower without it
                cache = None
        folders = [self.folder] if self.overrides is None else [self.overrides, self.folder]
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),  # the first folder that has a template gives it
            bytecode_cache=cache,
            auto_reload=False,  # one environment per build: no stat of every template for every page
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            cache_size=-1,  # a dict of its few templates: no LRU bookkeeping on each of a page's three lookups
        )
        zone = ZoneInfo(self.site.timezone)
        environment.filters["day"] = lambda moment: _day(moment, zone)
        return environment

    def feed_links(self, slug: str, title: str) -> tuple[FeedLink, ...]:
        """The links to feed `slug` (a category slug or SITE_FEED) in every configured format."""
        return tuple(
            FeedLink(f"{title} ({FORMAT_NAMES[fmt]})", self.urls.feed(slug, fmt), MEDIA_TYPES[fmt], FORMAT_NAMES[fmt])
            for fmt in self.formats
        )

    def _feeds(self, groups: Sequence[tuple[str, str]]) -> FeedMarkup:
        """The rendered links to the feed groups `(slug, title)`, in order."""
        parts = []
        for slug, title in groups:
            if slug not in self._feed_markup:
                template = self.environment.get_template("_feeds.html.j2")
                links = self.feed_links(slug, title)
                self._feed_markup[slug] = (template.render(where="head", feeds=links).strip("\n"),
                                           template.render(where="footer", feeds=links, title=title).strip("\n"))
            parts.append(self._feed_markup[slug])
        return FeedMarkup(Markup("\n".join([h for h, _ in parts])), Markup("\n".join([f for _, f in parts])))

    def _navigation(self, current: str) -> Markup:
        """The navigation with `current` marked, rendered once per build for each `current`."""
        markup = self._nav_markup.get(current)
        if markup is None:
            html = self.environment.get_template("_nav.html.j2").render(
                nav=self.nav, archive_url=self.archive_url, current=current)
            markup = self._nav_markup[current] = Markup(html.rstrip("\n"))
        return markup

    def _render(self, template: str, *, current: str = "", **values: object) -> bytes:
        # Everything shown is XML-safe already (Article, Category, SiteInfo), so the page is too.
        return self.environment.get_template(template).render(
            self._shared, navigation=self._navigation(current), current=current, **values).encode("utf-8")

    def _subscribe(self, categories: Sequence[Category] = ()) -> SubscribeBox:
        if not categories:
            return SubscribeBox(f"Get {self.site.title} by email",
                                "The new articles in one short email, daily or weekly. Unsubscribe with one click.",
                                ())
        listed = [c.name for c in categories]
        names = listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} and {listed[-1]}"
        return SubscribeBox(f"Get {names} by email",
                            f"New {names} articles from {self.site.title} in one short email, daily or weekly. "
                            "Unsubscribe with one click.",
                            tuple(c.slug for c in categories))

    def _tag_link(self, category: Category) -> str:
        """The link to `category` an article page shows, made once per build for each category."""
        link = self._tag_links.get(category.slug)
        if link is None:  # escape(), not Markup.format (string.Formatter, in Python)
            link = self._tag_links[category.slug] = (
                f'<a href="{escape(self.urls.category(category.slug))}" rel="tag">{escape(category.name)}</a>')
        return link

    def stylesheet(self) -> bytes:
        """The site's stylesheet, as the build writes it beside the pages."""
        return template_path(STYLESHEET, self.folder, self.overrides).read_bytes()

    def fingerprint(self) -> str:
        """template_fingerprint of the templates these pages are rendered from."""
        return template_fingerprint(self.folder, self.overrides)

    def index(self, categories: Sequence[CategoryEntry], newest: Sequence[Article]) -> bytes:
        """The front page: the subscribe box, the newest articles, and every category's feeds in the footer."""
        return self._render(
            "index.html.j2", categories=categories, articles=newest,
            feeds=self._feeds([(SITE_FEED, self.site.title)]), subscribe=self._subscribe(),
        )

    def not_found(self) -> bytes:
        """The 404 page: where to go instead (the categories; no article, so an edit never rewrites it)."""
        return self._render("not_found.html.j2", feeds=self._feeds([(SITE_FEED, self.site.title)]),
                            subscribe=self._subscribe())

    def page(self, template: str, *, current: str = "", subscribe_to: Sequence[Category] = (), **values: object) -> bytes:
        """Another page on the site's base (the archive's): navigation, subscribe box for `subscribe_to`, feeds."""
        return self._render(template, feeds=self._feeds([(SITE_FEED, self.site.title)]),
                            subscribe=self._subscribe(subscribe_to), current=current, **values)

    def category(self, category: Category, description: str, articles: Sequence[Article]) -> bytes:
        """A category page listing `articles` (newest first), with its feeds and the site's."""
        feeds = self._feeds([(category.slug, f"{self.site.title}: {category.name}"), (SITE_FEED, self.site.title)])
        return self._render("category.html.j2", category=category, description=description, articles=articles, feeds=feeds,
                            subscribe=self._subscribe([category]), current=category.slug)

    def article(self, article: Article) -> bytes:
        """An article page, with the feeds of each of its categories and the site's.

        The values it shows are worked out here rather than in the template: it is rendered
        10,000 times in a build of 10,000 articles, and every call from a template costs."""
        groups = [(c.slug, f"{self.site.title}: {c.name}") for c in article.categories]
        feeds = self._feeds(groups + [(SITE_FEED, self.site.title)])
        zone = ZoneInfo(self.site.timezone)  # ZoneInfo keeps its instances: no file read each time
        published = _Moment(article.published.isoformat(), _day(article.published, zone))
        updated = None
        if article.updated.date() != article.published.date():
            updated = _Moment(article.updated.isoformat(), _day(article.updated, zone))
        links = Markup(", ".join([self._tag_link(c) for c in article.categories]))
        return self._render("article.html.j2", article=article, feeds=feeds, page_url=self.urls.article(article),
                            published=published, updated=updated, category_links=links or escape(""),
                            subscribe=self._subscribe(article.categories),
                            current=article.categories[0].slug if article.categories else "")


class _Moment(NamedTuple):
    iso: str
    day: str


def _day(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local.day} {local:%B %Y}"

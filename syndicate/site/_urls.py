"""Every public URL the site, the feeds and the emails link to, made in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

from syndicate.content import Article

FEED_SUFFIXES = {"rss": ".rss.xml", "atom": ".atom.xml", "json": ".json"}
SITE_FEED = "all"


@dataclass(frozen=True)
class SiteUrls:
    """URLs under `base_url` (no trailing slash). Paths relative to the output folder
    are the same strings without the base."""

    base_url: str
    feeds_folder: str = "feeds"

    def home(self) -> str:
        return f"{self.base_url}/"

    def article(self, article: Article) -> str:
        """The canonical `url` of the article, else its page on this site."""
        return article.url or f"{self.base_url}/{self.article_path(article.slug)}"

    def category(self, slug: str) -> str:
        return f"{self.base_url}/{self.category_path(slug)}"

    def feed(self, slug: str, fmt: str) -> str:
        """`slug` is a category slug, or SITE_FEED for the whole site."""
        return f"{self.base_url}/{self.feed_path(slug, fmt)}"

    def asset(self, name: str) -> str:
        """A file of the site's own beside the pages (the stylesheet)."""
        return f"{self.base_url}/{name}"

    def opml(self, fmt: str | None = None) -> str:
        """The main OPML (one feed per category), or with `fmt` the one listing every feed in that format."""
        return f"{self.base_url}/{self.opml_path(fmt)}"

    def opml_path(self, fmt: str | None = None) -> str:
        return f"{self.feeds_folder}/index.opml" if fmt is None else f"{self.feeds_folder}/index.{fmt}.opml"

    @staticmethod
    def article_path(slug: str) -> str:
        return f"articles/{slug}/"

    @staticmethod
    def category_path(slug: str) -> str:
        return f"categories/{slug}/"

    def feed_path(self, slug: str, fmt: str) -> str:
        return f"{self.feeds_folder}/{slug}{FEED_SUFFIXES[fmt]}"

    # The archive of the digests as sent (syndicate.archive).
    def archive(self) -> str:
        return f"{self.base_url}/{self.archive_path()}"

    @staticmethod
    def archive_path() -> str:
        return "archive/"

    def archive_issue(self, frequency: str, period: str) -> str:
        """The archive page of one day's (daily) or one ISO week's (weekly) digests: period 2026-12-05 or 2026-W49."""
        return f"{self.base_url}/{self.archive_issue_path(frequency, period)}"

    @staticmethod
    def archive_issue_path(frequency: str, period: str) -> str:
        return f"archive/{frequency}/{period}/"

    def archive_category(self, slug: str) -> str:
        return f"{self.base_url}/{self.archive_category_path(slug)}"

    @staticmethod
    def archive_category_path(slug: str) -> str:
        return f"archive/categories/{slug}/"

    def archive_feed(self, slug: str) -> str:
        return f"{self.base_url}/{self.archive_feed_path(slug)}"

    @staticmethod
    def archive_feed_path(slug: str) -> str:
        return f"archive/categories/{slug}.rss.xml"

    # Subscriber pages (served by the HTTP app); tokens come from syndicate.subscribers._tokens.
    def signup(self) -> str:
        return f"{self.base_url}/subscribe"

    def confirm(self, token: str) -> str:
        return f"{self.base_url}/confirm/{quote(token, safe='')}"

    def unsubscribe(self, token: str) -> str:
        """Also the RFC 8058 one-click endpoint (POST List-Unsubscribe=One-Click)."""
        return f"{self.base_url}/unsubscribe/{quote(token, safe='')}"

    def preferences(self, token: str) -> str:
        return f"{self.base_url}/preferences/{quote(token, safe='')}"


def archive_period(frequency: str, moment: datetime, zone: ZoneInfo) -> str:
    """The archive period a digest sent at `moment` belongs to: its day (2026-12-05) for daily
    digests, its ISO week (2026-W49) for weekly ones, in the site's zone `zone`."""
    local = moment.astimezone(zone)
    if frequency == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return local.date().isoformat()

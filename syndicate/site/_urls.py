"""Every public URL the site, the feeds and the emails link to, made in one place."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

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

    def opml(self) -> str:
        return f"{self.base_url}/{self.feeds_folder}/index.opml"

    @staticmethod
    def article_path(slug: str) -> str:
        return f"articles/{slug}/"

    @staticmethod
    def category_path(slug: str) -> str:
        return f"categories/{slug}/"

    def feed_path(self, slug: str, fmt: str) -> str:
        return f"{self.feeds_folder}/{slug}{FEED_SUFFIXES[fmt]}"

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

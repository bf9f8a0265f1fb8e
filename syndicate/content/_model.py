"""The values the content stage hands on: articles and their categories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from syndicate.content._text import make_xml_safe


@dataclass(frozen=True, order=True)
class Category:
    """A category: `slug` identifies it (URLs, feeds, preferences); `name` is shown to people."""

    slug: str
    name: str

    def __post_init__(self) -> None:
        make_xml_safe(self, ("name",))


@dataclass(frozen=True)
class Article:
    """One article read from `content/`, ready for feeds, pages and digests.

    `id` never changes when the title or body is edited; `published` and
    `updated` are timezone-aware; `categories` keep the order they were written in.
    """

    id: str
    slug: str
    title: str
    author: str
    published: datetime
    updated: datetime
    categories: tuple[Category, ...]
    body_html: str
    summary: str
    source: str  # path relative to the content folder, with / separators
    content_hash: str
    url: str | None = None
    # An article from another site's feed (syndicate.sources): the feed's name and its URL.
    source_name: str | None = None
    source_url: str | None = None
    image: str | None = None  # front matter `image`: the picture the digest shows (absolute URL)

    def __post_init__(self) -> None:
        if self.published.tzinfo is None or self.updated.tzinfo is None:
            raise ValueError(f"{self.source}: article datetimes must be timezone-aware")
        # The links too: a lone surrogate (a JSON or YAML escape) would stop every message naming them.
        make_xml_safe(self, ("id", "title", "author", "body_html", "summary", "url", "source_name", "source_url", "image"))

    @property
    def category_slugs(self) -> tuple[str, ...]:
        return tuple(c.slug for c in self.categories)


class ArticleRef(NamedTuple):
    """What a Corpus tells of one of its articles without making the Article (no text): enough to
    place it (its URLs, feeds and categories, as the corpus shows them) and to tell when it changed.
    `Corpus.articles_of(refs)` gives the Articles themselves."""

    id: str
    slug: str
    source: str
    content_hash: str
    published: datetime
    updated: datetime
    categories: tuple[Category, ...]
    url: str | None

    @property
    def category_slugs(self) -> tuple[str, ...]:
        return tuple(c.slug for c in self.categories)


def article_ref(article: Article) -> ArticleRef:
    return ArticleRef(article.id, article.slug, article.source, article.content_hash, article.published, article.updated,
                      article.categories, article.url)

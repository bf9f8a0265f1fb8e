"""The values the content stage hands on: articles and their categories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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

    def __post_init__(self) -> None:
        if self.published.tzinfo is None or self.updated.tzinfo is None:
            raise ValueError(f"{self.source}: article datetimes must be timezone-aware")
        make_xml_safe(self, ("id", "title", "author", "body_html", "summary"))

    @property
    def category_slugs(self) -> tuple[str, ...]:
        return tuple(c.slug for c in self.categories)

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
    image: str | None = None  # front matter `image`: the picture the digest shows (absolute URL)

    def __post_init__(self) -> None:
        if self.published.tzinfo is None or self.updated.tzinfo is None:
            raise ValueError(f"{self.source}: article datetimes must be timezone-aware")
        make_xml_safe(self, ("id", "title", "author", "body_html", "summary"))

    # An Article loaded from the reader's cache may leave its body on disk until it is first
    # read (`_lazy_body`, an object with a `read()` method): a warm read of 10,000 articles
    # then never unpickles 55 MB of HTML that a rebuild mostly does not use.
    def __getattr__(self, name: str) -> object:
        lazy = self.__dict__.get("_lazy_body") if name == "body_html" else None
        if lazy is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        body = lazy.read()
        object.__setattr__(self, "body_html", body)
        return body

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if state.pop("_lazy_body", None) is not None:
            state["body_html"] = self.body_html
        return state

    @property
    def category_slugs(self) -> tuple[str, ...]:
        return tuple(c.slug for c in self.categories)

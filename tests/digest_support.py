"""Shared values for the digest, render and message tests: settings, sample content, subscribers, links."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from syndicate.config import Settings, load_settings
from syndicate.content._model import Article, Category
from syndicate.content._reader import Corpus
from syndicate.subscribers._model import Frequency, Subscriber, SubscriberStatus
from syndicate.wiring import load_corpus

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
# The sample content's newest article is 2026-11-25 07:00 +01:00.
SAMPLE_NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


class SignedLookingLinks:
    """A deterministic LinkMaker: per-subscriber URLs with characters that need escaping in HTML."""

    def __init__(self, base: str = "https://news.example.org") -> None:
        self.base = base

    def unsubscribe_url(self, subscriber: Subscriber) -> str:
        return f"{self.base}/unsubscribe/tok-{subscriber.id}.sig?u={subscriber.id}&v=1"

    def preferences_url(self, subscriber: Subscriber) -> str:
        return f"{self.base}/preferences/tok-{subscriber.id}.sig"


def sample_settings(**sections: dict) -> Settings:
    """The demo config, with `sections` fields replaced (e.g. digest={"max_articles": 3})."""
    settings = load_settings(ROOT / "config" / "syndicate.toml")
    updates = {name: getattr(settings, name).model_copy(update=fields) for name, fields in sections.items()}
    return settings.model_copy(update=updates)


def sample_corpus(settings: Settings) -> Corpus:
    return load_corpus(settings, use_cache=False)


def subscriber(categories: tuple[str, ...], **fields) -> Subscriber:
    base = Subscriber(
        id=42,
        email="ana@example.org",
        name="Ana Müller",
        status=SubscriberStatus.ACTIVE,
        categories=categories,
        frequency=Frequency.WEEKLY,
        timezone="Europe/Paris",
        send_hour=8,
    )
    return replace(base, **fields)


def category(slug: str, name: str | None = None) -> Category:
    return Category(slug, name or slug.replace("-", " ").title())


def article(ident: str, published: datetime, *categories: Category, title: str | None = None) -> Article:
    return Article(
        id=ident,
        slug=ident,
        title=title or f"Article {ident}",
        author="Desk",
        published=published,
        updated=published,
        categories=tuple(categories),
        body_html=f"<p>Body of {ident}</p>",
        summary=f"Summary of {ident}.",
        source=PurePosixPath(f"{ident}.md"),
        content_hash=hashlib.sha256(ident.encode()).hexdigest(),
    )


def hours(n: float) -> timedelta:
    return timedelta(hours=n)

"""Chooses what each subscriber's digest contains: new articles of their categories since their high-water mark."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from syndicate.config import Settings
from syndicate.models import Article, Category, Frequency, Subscriber

PERIODS = {Frequency.DAILY: timedelta(days=1), Frequency.WEEKLY: timedelta(days=7)}


@dataclass(frozen=True)
class DigestSection:
    """The articles shown under one category (newest first) and how many more were left out."""

    category: Category
    articles: tuple[Article, ...]
    hidden: int = 0


@dataclass(frozen=True)
class Digest:
    """One subscriber's digest.

    `sections` (in the site's category order), their articles and hidden counts are the
    same for every subscriber who gets the same set of articles: `variant_key` names
    that set, so they share one rendering. `since` is where the digest starts (the
    subscriber's high-water mark, or `now - period` for a first digest); `until` is the
    newest article's published time, the new high-water mark once the digest is sent.
    """

    subscriber: Subscriber
    sections: tuple[DigestSection, ...]
    since: datetime
    until: datetime
    variant_key: str

    @property
    def articles(self) -> tuple[Article, ...]:
        """Every shown article, in the order the digest shows them."""
        return tuple(a for section in self.sections for a in section.articles)

    @property
    def count(self) -> int:
        return sum(len(s.articles) for s in self.sections)

    @property
    def hidden(self) -> int:
        return sum(s.hidden for s in self.sections)

    @property
    def categories(self) -> tuple[Category, ...]:
        return tuple(s.category for s in self.sections)


def first_digest_start(subscriber: Subscriber, now: datetime) -> datetime:
    """`now` minus one period, counted on the subscriber's own wall clock (so across a
    DST change a weekly window is still "since this time last week" where they live)."""
    local = now.astimezone(ZoneInfo(subscriber.timezone))
    start = (local.replace(tzinfo=None) - PERIODS[Frequency(subscriber.frequency)]).replace(tzinfo=local.tzinfo, fold=0)
    return start.astimezone(UTC)


@dataclass(frozen=True)
class Timeline:
    """Articles newest first with their POSIX times, made once per run so that each subscriber's
    selection only touches the articles inside their window."""

    articles: tuple[Article, ...]
    negated: tuple[float, ...]  # -timestamp, ascending, for bisect

    @classmethod
    def of(cls, articles: Iterable[Article]) -> Timeline:
        ordered = tuple(articles)
        negated = tuple(-a.published.timestamp() for a in ordered)
        for before, after, article in zip(negated, negated[1:], ordered[1:]):
            if after < before:
                raise ValueError(f"articles must be newest first ({article.id} is newer than the one before it)")
        return cls(ordered, negated)

    def window(self, since_ts: float, now_ts: float) -> tuple[Article, ...]:
        """Articles published after `since_ts` and not after `now_ts`."""
        first = bisect.bisect_left(self.negated, -now_ts)
        last = bisect.bisect_left(self.negated, -since_ts)
        return self.articles[first:last]


def _window(articles: Iterable[Article], since_ts: float, now_ts: float) -> Iterator[Article]:
    """The same as Timeline.window for a plain newest-first iterable, stopping at `since_ts`."""
    previous = float("inf")
    for article in articles:
        stamp = article.published.timestamp()
        if stamp > previous:
            raise ValueError(f"select_digest: articles must be newest first ({article.id} is newer than the one before it)")
        previous = stamp
        if stamp <= since_ts:
            return
        if stamp <= now_ts:
            yield article


def select_digest(
    subscriber: Subscriber,
    articles: Iterable[Article] | Timeline,
    categories: Sequence[Category],
    now: datetime,
    settings: Settings,
) -> Digest | None:
    """The digest `subscriber` gets at `now`, or None when nothing is new.

    Articles of any of their categories published after their high-water mark (or in the
    last period, before their first digest) and not after `now`. Each article appears
    once, under the first of its categories in `categories` order. At most
    `digest.max_articles` are shown, the newest; the rest are counted per category.

    `articles` must be newest first (as `Corpus.articles` are); a run over many
    subscribers passes `Timeline.of(articles)`, made once.
    """
    if now.tzinfo is None:
        raise ValueError("select_digest: `now` must be timezone-aware")
    # Instants compare as POSIX timestamps: aware datetimes sharing one tzinfo compare by
    # wall clock, which is wrong in the repeated hour of a DST change.
    now_ts = now.timestamp()
    since = subscriber.high_water or first_digest_start(subscriber, now)
    since_ts = since.timestamp()
    if isinstance(articles, Timeline):
        candidates: Iterable[Article] = articles.window(since_ts, now_ts)
    else:
        candidates = _window(articles, since_ts, now_ts)
    followed = set(subscriber.categories)
    order = [c for c in categories if c.slug in followed]
    rank = {c.slug: i for i, c in enumerate(order)}
    picked: dict[str, tuple[int, Article]] = {}
    for article in candidates:  # newest first
        if article.id in picked:
            continue
        places = [rank[c.slug] for c in article.categories if c.slug in rank]
        if places:
            picked[article.id] = (min(places), article)
    if not picked:
        return None
    newest_first = list(picked.values())
    shown = newest_first[: settings.digest.max_articles]
    left_out = newest_first[settings.digest.max_articles:]
    sections = tuple(
        DigestSection(
            category=category,
            articles=tuple(a for place, a in shown if place == i),
            hidden=sum(1 for place, _ in left_out if place == i),
        )
        for i, category in enumerate(order)
    )
    sections = tuple(s for s in sections if s.articles or s.hidden)
    return Digest(
        subscriber=subscriber,
        sections=sections,
        since=since,
        until=newest_first[0][1].published,
        variant_key=variant_key(sections),
    )


def section_key(section: DigestSection) -> str:
    """Names one section's rendered content: its category, articles (and their versions) and hidden count."""
    parts = [section.category.slug, section.category.name, str(section.hidden)]
    parts += [f"{a.id}\x1f{a.content_hash}" for a in section.articles]
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()[:20]


def variant_key(sections: Sequence[DigestSection]) -> str:
    """Names the rendered content of a whole digest: the same sections in the same order."""
    return hashlib.sha256("|".join(section_key(s) for s in sections).encode()).hexdigest()[:20]

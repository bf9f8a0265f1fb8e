"""Chooses what each subscriber's digest contains: new articles of their categories since their high-water mark."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Protocol, overload
from zoneinfo import ZoneInfo

from syndicate.content import Article, Category, Corpus
from syndicate.subscribers import Frequency, Subscriber

MEMO_SIZE = 4096  # choices a Selector remembers
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
    issue: int | None = None  # its number in the subscriber's series (1 for the first), when the outbox knows it

    @property
    def articles(self) -> tuple[Article, ...]:
        """Every shown article, in the order the digest shows them."""
        return tuple(chain.from_iterable(section.articles for section in self.sections))

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
    """Articles newest first, indexed by category with their POSIX times; made once per run so
    that each subscriber's selection only touches their categories' articles in their window."""

    articles: Sequence[Article]
    by_category: Mapping[str, tuple[tuple[float, ...], tuple[int, ...]]]  # slug -> (-timestamps ascending, indexes)

    @classmethod
    def of(cls, articles: Iterable[Article]) -> Timeline:
        ordered = tuple(articles)
        return cls(ordered, _index(ordered))

    @classmethod
    def of_corpus(cls, corpus: Corpus) -> Timeline:
        """The corpus's articles indexed from its refs (dates and categories): an Article, with
        its text, is made only when a digest shows it; a run's digests show the newest few."""
        return cls(_CorpusArticles(corpus), _index(corpus.refs))

    def pick(self, order: Sequence[str], since_ts: float, now_ts: float) -> list[tuple[int, Article]]:
        """(place, article), newest first, for the articles of the `order` categories published
        after `since_ts` and not after `now_ts`; `place` is the first of its categories in `order`."""
        claimed: dict[int, int] = {}
        for place, slug in enumerate(order):
            entry = self.by_category.get(slug)
            if entry is None:
                continue
            negated, indexes = entry
            first, last = bisect.bisect_left(negated, -now_ts), bisect.bisect_left(negated, -since_ts)
            for index in indexes[first:last]:
                claimed.setdefault(index, place)
        return [(claimed[i], self.articles[i]) for i in sorted(claimed)]


class _Dated(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def published(self) -> datetime: ...

    @property
    def category_slugs(self) -> tuple[str, ...]: ...


def _index(ordered: Sequence[_Dated]) -> dict[str, tuple[tuple[float, ...], tuple[int, ...]]]:
    """Timeline.by_category of articles (or their refs) newest first."""
    negated = [-a.published.timestamp() for a in ordered]
    for before, after, article in zip(negated, negated[1:], ordered[1:]):
        if after < before:
            raise ValueError(f"articles must be newest first ({article.id} is newer than the one before it)")
    stamps: dict[str, list[float]] = {}
    indexes: dict[str, list[int]] = {}
    for i, article in enumerate(ordered):
        for slug in dict.fromkeys(article.category_slugs):
            stamps.setdefault(slug, []).append(negated[i])
            indexes.setdefault(slug, []).append(i)
    return {slug: (tuple(stamps[slug]), tuple(indexes[slug])) for slug in stamps}


class _CorpusArticles(Sequence[Article]):
    """A corpus's articles by place, each made (by the corpus, once) when first asked for."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus

    def __len__(self) -> int:
        return len(self.corpus.refs)

    @overload
    def __getitem__(self, index: int) -> Article: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Article]: ...

    def __getitem__(self, index: int | slice) -> Article | Sequence[Article]:
        if isinstance(index, slice):
            return self.corpus.articles_of(self.corpus.refs[index])
        return self.corpus.article(self.corpus.refs[index])


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


def _pick(candidates: Iterable[Article], rank: Mapping[str, int]) -> list[tuple[int, Article]]:
    """What Timeline.pick gives, from a plain newest-first iterable."""
    picked: dict[str, tuple[int, Article]] = {}
    for article in candidates:
        if article.id in picked:
            continue
        places = [rank[c.slug] for c in article.categories if c.slug in rank]
        if places:
            picked[article.id] = (min(places), article)
    return list(picked.values())


def select_digest(
    subscriber: Subscriber,
    articles: Iterable[Article] | Timeline,
    categories: Sequence[Category],
    now: datetime,
    max_articles: int,
) -> Digest | None:
    """The digest `subscriber` gets at `now`, or None when nothing is new.

    Articles of any of their categories published after their high-water mark (or in the
    last period, before their first digest) and not after `now`. Each article appears
    once, under the first of its categories in `categories` order. At most
    `max_articles` are shown, the newest; the rest are counted per category.

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
    order = _order(subscriber, categories)
    if isinstance(articles, Timeline):
        newest_first = articles.pick([c.slug for c in order], since_ts, now_ts)
    else:
        newest_first = _pick(_window(articles, since_ts, now_ts), {c.slug: i for i, c in enumerate(order)})
    chosen = _chosen(order, newest_first, max_articles)
    if chosen is None:
        return None
    sections, until, key = chosen
    return Digest(subscriber=subscriber, sections=sections, since=since, until=until, variant_key=key)


class Selector:
    """select_digest(subscriber, Timeline.of(articles), categories, now, max_articles) for the many
    subscribers of one run: the articles indexed once, and each choice remembered by (followed
    categories, start) since many subscribers share one (the last MEMO_SIZE, so memory stays flat)."""

    def __init__(self, articles: Iterable[Article] | Timeline, categories: Sequence[Category], now: datetime,
                 max_articles: int) -> None:
        if now.tzinfo is None:
            raise ValueError("select_digest: `now` must be timezone-aware")
        self.timeline = articles if isinstance(articles, Timeline) else Timeline.of(articles)
        self.categories = tuple(categories)
        self.now = now
        self.now_ts = now.timestamp()
        self.limit = max_articles
        self._memo: dict[tuple[tuple[str, ...], float], tuple[tuple[DigestSection, ...], datetime, str] | None] = {}

    def select(self, subscriber: Subscriber) -> Digest | None:
        since = subscriber.high_water or first_digest_start(subscriber, self.now)
        since_ts = since.timestamp()
        key = (subscriber.categories, since_ts)
        if key in self._memo:
            chosen = self._memo[key]
        else:
            order = _order(subscriber, self.categories)
            chosen = _chosen(order, self.timeline.pick([c.slug for c in order], since_ts, self.now_ts), self.limit)
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = chosen
        if chosen is None:
            return None
        sections, until, variant = chosen
        return Digest(subscriber=subscriber, sections=sections, since=since, until=until, variant_key=variant)


def _order(subscriber: Subscriber, categories: Sequence[Category]) -> list[Category]:
    """The categories `subscriber` follows, in `categories` order."""
    # No category chosen means every category (the subscriber store's convention).
    followed = set(subscriber.categories) or {c.slug for c in categories}
    return [c for c in categories if c.slug in followed]


def _chosen(
    order: Sequence[Category], newest_first: Sequence[tuple[int, Article]], limit: int
) -> tuple[tuple[DigestSection, ...], datetime, str] | None:
    """(sections, until, variant key) of the picked articles; None when there are none."""
    if not newest_first:
        return None
    sections = _sections(order, newest_first, limit)
    return sections, newest_first[0][1].published, variant_key(sections)


def _sections(order: Sequence[Category], newest_first: Sequence[tuple[int, Article]], limit: int) -> tuple[DigestSection, ...]:
    """The non-empty sections in `order`: the first `limit` articles shown under their place, the rest counted."""
    shown: dict[int, list[Article]] = {}
    hidden: dict[int, int] = {}
    for place, article in newest_first[:limit]:
        shown.setdefault(place, []).append(article)
    for place, _ in newest_first[limit:]:
        hidden[place] = hidden.get(place, 0) + 1
    return tuple(
        DigestSection(category=order[i], articles=tuple(shown.get(i, ())), hidden=hidden.get(i, 0))
        for i in sorted(shown.keys() | hidden.keys())
    )


def section_key(section: DigestSection) -> str:
    """Names one section's rendered content: its category, articles (and their versions) and hidden count."""
    parts = [section.category.slug, section.category.name, str(section.hidden)]
    parts += [f"{a.id}\x1f{a.content_hash}" for a in section.articles]
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()[:20]


def variant_key(sections: Sequence[DigestSection]) -> str:
    """Names the rendered content of a whole digest: the same sections in the same order."""
    parts: list[str] = []
    for section in sections:
        parts += [section.category.slug, section.category.name, str(section.hidden)]
        parts += [f"{a.id}\x1f{a.content_hash}" for a in section.articles]
        parts.append("\x1d")
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()[:20]


"""Fetches the configured sources, keeps their items (new, changed, unchanged) and publishes them as Articles.

One source's failure never touches another, nor its own items: a fetch that fails is
recorded (status, error, consecutive failures) and the next one is pushed back
(doubling from the source's interval up to a day, never before a `Retry-After`); the items
already stored stay published.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from syndicate.config import SourceSettings
from syndicate.content import Article, Category, plain_text, slugify, snapshot_path, write_snapshot
from syndicate.sources._fetch import DEFAULT_POLICY, Fetched, FetchPolicy, HostGate, fetch_feed
from syndicate.sources._parse import FeedError, ParsedFeed, RemoteItem, parse_feed
from syndicate.sources._store import FeedState, SourceStore, StoredItem
from syndicate.storage import Database

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(days=1)
FILTER_TEXT = 10_000  # characters of an item the include/exclude regexes see (bounded work)
PARALLEL_HOSTS = 4


@dataclass(frozen=True)
class FetchReport:
    """What one fetch of one source did."""

    name: str
    status: str  # ok | not-modified | error | disabled
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    filtered: int = 0
    pruned: int = 0
    error: str | None = None
    warning: str | None = None
    next_fetch_at: datetime | None = None
    articles: tuple[Article, ...] = ()  # what the items would become (dry runs and checks)

    @property
    def changed(self) -> bool:
        return bool(self.new or self.updated or self.pruned)


@dataclass(frozen=True)
class SourceStatus:
    """One source as `syndicate sources list` and /api/status show it."""

    name: str
    url: str
    enabled: bool
    title: str
    categories: tuple[str, ...]
    items: int
    last_fetch_at: datetime | None
    last_status: str | None
    last_error: str | None
    failures: int
    next_fetch_at: datetime | None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name, "url": self.url, "enabled": self.enabled, "title": self.title,
            "categories": list(self.categories), "items": self.items,
            "last_fetch_at": self.last_fetch_at.isoformat() if self.last_fetch_at else None,
            "last_status": self.last_status, "last_error": self.last_error, "failures": self.failures,
            "next_fetch_at": self.next_fetch_at.isoformat() if self.next_fetch_at else None,
        }


def item_key(item: RemoteItem) -> str | None:
    """An item's identity: its guid, else its link, else its title and text; None if it has none of them."""
    basis = item.guid or item.link or (item.title + item.summary_html + item.content_html)
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest() if basis else None


def _content_hash(*parts: object) -> str:
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode("utf-8", "surrogatepass")).hexdigest()


def _enclosures_html(item: RemoteItem) -> str:
    if not item.enclosures:
        return ""
    links = []
    for enclosure in item.enclosures:
        size = f", {enclosure.length / 1_000_000:.1f} MB" if enclosure.length else ""
        kind = html.escape(enclosure.media_type or "file")
        links.append(f'<li><a href="{html.escape(enclosure.url)}" rel="enclosure">{kind}{size}</a></li>')
    return f'<ul class="enclosures">{"".join(links)}</ul>'


def _matches(settings: SourceSettings, item: RemoteItem) -> bool:
    text = f"{item.title}\n{plain_text(item.summary_html or item.content_html)}"[:FILTER_TEXT]
    if settings.include and not re.search(settings.include, text):
        return False
    return not (settings.exclude and re.search(settings.exclude, text))


def _stored(name: str, key: str, item: RemoteItem, old: StoredItem | None, now: datetime) -> StoredItem:
    """The item as it is to be stored: dates normalised (none or unreadable: first seen; in the
    future: now), an edit (content changed) dated no earlier than when we saw it."""
    first_seen = old.first_seen if old else now
    published = min(item.published or item.updated or first_seen, now)
    if old is not None and item.published is None and item.updated is None:
        published = old.published
    updated = max(min(item.updated or published, now), published)
    extra = _enclosures_html(item)
    body = item.content_html + extra if item.content_html else ""
    summary = item.summary_html + extra if item.summary_html or extra else ""
    title = item.title or plain_text(item.summary_html or item.content_html)[:80] or "Untitled"
    digest = _content_hash(item.link, title, item.author, published.isoformat(), body, summary)
    if old is not None and old.content_hash == digest:
        updated = old.updated
    elif old is not None and updated <= old.updated:
        updated = now  # edited upstream without a newer date: it changed when we saw it change
    return StoredItem(name, old.item_key if old else key, item.guid, item.link, title, item.author,
                      published, updated, first_seen, now, body, summary, digest)


def to_article(name: str, settings: SourceSettings, item: StoredItem, source_name: str, summary_length: int) -> Article:
    """A stored item as an Article of the source's categories, naming and linking its source;
    its `url` (the canonical link) is the original's."""
    categories = tuple(dict.fromkeys(Category(slugify(c) or c, c) for c in settings.categories))
    body = item.body_html if settings.full_content and item.body_html else (item.summary_html or item.body_html)
    text = plain_text(item.summary_html or item.body_html)
    summary = text if len(text) <= summary_length else text[:summary_length].rsplit(" ", 1)[0] + "…"
    digest = _content_hash(item.content_hash, source_name, settings.url, settings.full_content,
                           item.updated.isoformat(), [(c.slug, c.name) for c in categories])
    return Article(
        id=f"source:{name}:{item.item_key[:32]}", slug=f"{name}-{item.item_key[:12]}", title=item.title,
        author=item.author or source_name, published=item.published, updated=item.updated, categories=categories,
        body_html=body or f"<p>{html.escape(item.title)}</p>", summary=summary,
        source=f"sources/{name}/{item.item_key[:16]}", content_hash=digest, url=item.link,
        source_name=source_name, source_url=settings.url,
    )


class Sources:
    """The configured external feeds over the database: fetch, list, publish.

    `var_folder` holds the published snapshot (syndicate.content._external); `summary_length`
    is the content settings' summary length. One `gate` keeps to one request per host.
    """

    def __init__(self, database: Database, sources: Mapping[str, SourceSettings], *, var_folder: Path,
                 summary_length: int = 300, policy: FetchPolicy = DEFAULT_POLICY, gate: HostGate | None = None) -> None:
        self.store = SourceStore(database)
        self.sources = dict(sources)
        self.var_folder = var_folder
        self.summary_length = summary_length
        self.policy = policy
        self.gate = gate or HostGate()
        self._publishing = threading.Lock()

    # -- fetching

    def fetch(self, name: str, now: datetime, *, dry_run: bool = False, publish: bool = True) -> FetchReport:
        """Fetch source `name` now (due or not), store what changed and (with `publish`) publish;
        with `dry_run`, store nothing and send no conditional headers: the report's articles say
        what the items would become."""
        report = self._fetch(name, now, dry_run)
        if publish and report.changed and not dry_run:
            self.publish()
        return report

    def _fetch(self, name: str, now: datetime, dry_run: bool) -> FetchReport:
        settings = self.sources[name]
        state = self.store.state(name) or FeedState(name, settings.url)
        if state.url != settings.url:  # a new address: its validators mean nothing there
            state = replace(state, url=settings.url, etag=None, last_modified=None)
        fetched = fetch_feed(settings.url, etag=None if dry_run else state.etag,
                             last_modified=None if dry_run else state.last_modified,
                             now=now, policy=self.policy, gate=self.gate)
        if fetched.error is not None:
            return self._failed(state, settings, fetched, fetched.error, now, dry_run)
        if fetched.not_modified:
            return self._not_modified(state, settings, fetched, now, dry_run)
        try:
            feed = parse_feed(fetched.body, content_type=fetched.content_type, url=fetched.url)
        except FeedError as e:
            return self._failed(state, settings, fetched, str(e), now, dry_run)
        except Exception as e:  # a parser bug on hostile input stays this source's problem
            log.exception("source %s: cannot parse %s", name, fetched.url)
            return self._failed(state, settings, fetched, f"cannot parse: {type(e).__name__}: {e}", now, dry_run)
        return self._store(state, settings, fetched, feed, now, dry_run)

    def _next(self, settings: SourceSettings, failures: int, now: datetime, retry_after: datetime | None) -> datetime:
        wait = timedelta(seconds=settings.interval)
        if failures:
            wait = min(wait * 2 ** min(failures - 1, 16), max(MAX_BACKOFF, wait))
        return max(now + wait, retry_after or now)

    def _failed(self, state: FeedState, settings: SourceSettings, fetched: Fetched, error: str,
                now: datetime, dry_run: bool) -> FetchReport:
        failures = state.failures + 1
        next_at = self._next(settings, failures, now, fetched.retry_after)
        log.warning("source fetch failed source=%s url=%s status=%s failures=%d next=%s error=%s",
                    state.name, settings.url, fetched.status, failures, next_at.isoformat(), error)
        if not dry_run:
            self.store.save_state(replace(state, last_fetch_at=now, last_status="error", last_http_status=fetched.status,
                                          last_error=error, failures=failures, next_fetch_at=next_at))
        return FetchReport(state.name, "error", error=error, next_fetch_at=next_at)

    def _not_modified(self, state: FeedState, settings: SourceSettings, fetched: Fetched, now: datetime,
                      dry_run: bool) -> FetchReport:
        next_at = self._next(settings, 0, now, fetched.retry_after)
        if not dry_run:
            self.store.save_state(replace(state, last_fetch_at=now, last_success_at=now, last_status="not-modified",
                                          last_http_status=304, last_error=None, failures=0, next_fetch_at=next_at,
                                          etag=fetched.etag or state.etag, last_modified=fetched.last_modified or state.last_modified))
        log.debug("source not modified source=%s", state.name)
        return FetchReport(state.name, "not-modified", next_fetch_at=next_at)

    def _store(self, state: FeedState, settings: SourceSettings, fetched: Fetched, feed: ParsedFeed,
               now: datetime, dry_run: bool) -> FetchReport:
        name = state.name
        wanted = [item for item in feed.items if _matches(settings, item)]
        filtered = len(feed.items) - len(wanted)
        wanted.sort(key=lambda i: i.published or i.updated or now, reverse=True)
        old_items = self.store.items([name])
        by_guid = {i.guid: i for i in old_items if i.guid}
        by_link = {i.link: i for i in old_items if i.link}
        by_key = {i.item_key: i for i in old_items}
        new: list[StoredItem] = []
        changed: list[StoredItem] = []
        unchanged: list[str] = []
        taken: set[str] = set()
        for item in wanted[:settings.max_items]:
            key = item_key(item)
            if key is None:
                filtered += 1
                continue
            old = (by_guid.get(item.guid) if item.guid else None) or (by_link.get(item.link) if item.link else None) or by_key.get(key)
            stored = _stored(name, key, item, old, now)
            if stored.item_key in taken or (item.link and item.link in taken):  # the same item twice in one document
                continue
            taken.add(stored.item_key)
            if item.link:
                taken.add(item.link)
            if old is None:
                new.append(stored)
            elif old.content_hash != stored.content_hash or old.guid != stored.guid:
                changed.append(stored)
            else:
                unchanged.append(old.item_key)
        warning = feed.warning
        if old_items and len(new) == len(wanted) >= 3:
            warning = "every item is new since the last fetch (does the feed change its guids?); kept to max_items"
        next_at = self._next(settings, 0, now, fetched.retry_after)
        pruned = 0
        if not dry_run:
            with self.store.database.write() as connection:
                self.store.upsert(connection, new, changed, unchanged, name, now)
                pruned = self.store.prune(connection, name, settings.max_items)
                self.store.save_state(replace(
                    state, etag=fetched.etag, last_modified=fetched.last_modified, feed_title=feed.title,
                    feed_link=feed.link, last_fetch_at=now, last_success_at=now, last_status="ok",
                    last_http_status=fetched.status, last_error=warning, failures=0, next_fetch_at=next_at), connection)
        log.info("source fetched source=%s format=%s items=%d new=%d updated=%d unchanged=%d filtered=%d pruned=%d%s",
                 name, feed.format, len(feed.items), len(new), len(changed), len(unchanged), filtered, pruned,
                 f" warning={warning!r}" if warning else "")
        shown = self._articles(name, settings, [*new, *changed], feed.title) if dry_run else ()
        return FetchReport(name, "ok", len(new), len(changed), len(unchanged), filtered, pruned, None, warning, next_at, shown)

    def fetch_due(self, now: datetime, stop: threading.Event | None = None) -> list[FetchReport]:
        """Fetch every enabled source whose next fetch is due (a few hosts at a time, one request
        per host), then publish if any changed."""
        states = self.store.states()
        due = [name for name, settings in self.sources.items() if settings.enabled and (
            name not in states or states[name].url != settings.url or (states[name].next_fetch_at or now) <= now)]
        if not due:
            return []
        reports = []
        with ThreadPoolExecutor(max_workers=min(PARALLEL_HOSTS, len(due)), thread_name_prefix="source") as pool:
            futures = {name: pool.submit(self._fetch_logged, name, now, stop) for name in due}
            reports = [f.result() for f in futures.values()]
        if any(r.changed for r in reports):
            self.publish()
        return reports

    def _fetch_logged(self, name: str, now: datetime, stop: threading.Event | None) -> FetchReport:
        if stop is not None and stop.is_set():
            return FetchReport(name, "skipped", error="shutting down")
        try:
            return self._fetch(name, now, False)
        except Exception as e:  # e.g. the database went away: this source's problem, the others go on
            log.exception("source fetch failed source=%s", name)
            return FetchReport(name, "error", error=f"{type(e).__name__}: {e}")

    # -- publishing

    def display_name(self, name: str, feed_title: str | None) -> str:
        return self.sources[name].title or feed_title or name

    def _articles(self, name: str, settings: SourceSettings, items: Sequence[StoredItem],
                  feed_title: str | None) -> tuple[Article, ...]:
        source_name = self.display_name(name, feed_title)
        return tuple(to_article(name, settings, item, source_name, self.summary_length) for item in items)

    def articles(self) -> tuple[Article, ...]:
        """Every enabled source's stored items (that its include/exclude still let through) as Articles."""
        states = self.store.states()
        enabled = {name: s for name, s in self.sources.items() if s.enabled}
        by_source: dict[str, list[StoredItem]] = {}
        for item in self.store.items(enabled):
            by_source.setdefault(item.source, []).append(item)
        result: list[Article] = []
        for name, items in by_source.items():
            settings = enabled[name]
            kept = [i for i in items if _matches(settings, RemoteItem(i.guid, i.link, i.title, None, None, None, i.body_html, i.summary_html))]
            state = states.get(name)
            result.extend(self._articles(name, settings, kept[:settings.max_items], state.feed_title if state else None))
        return tuple(result)

    def publish(self) -> int:
        """Write the snapshot every corpus reader mixes in; how many articles it holds."""
        with self._publishing:
            articles = self.articles()
            write_snapshot(snapshot_path(self.var_folder), articles)
        log.info("sources published articles=%d", len(articles))
        return len(articles)

    # -- reporting

    def statuses(self) -> list[SourceStatus]:
        states = self.store.states()
        counts = self.store.counts()
        result = []
        for name, settings in self.sources.items():
            state = states.get(name)
            result.append(SourceStatus(
                name, settings.url, settings.enabled, self.display_name(name, state.feed_title if state else None),
                settings.categories, counts.get(name, 0), state.last_fetch_at if state else None,
                state.last_status if state else None, state.last_error if state else None,
                state.failures if state else 0, state.next_fetch_at if state else None,
            ))
        return result


def check_url(url: str, now: datetime, *, categories: Sequence[str] = ("main",), summary_length: int = 300,
              policy: FetchPolicy = DEFAULT_POLICY) -> tuple[Fetched, ParsedFeed | None, tuple[Article, ...], str | None]:
    """What `url`'s items would become as a source (nothing stored): the fetch, the feed, the articles, an error."""
    fetched = fetch_feed(url, etag=None, last_modified=None, now=now, policy=policy)
    if fetched.error is not None:
        return fetched, None, (), fetched.error
    try:
        feed = parse_feed(fetched.body, content_type=fetched.content_type, url=fetched.url)
    except FeedError as e:
        return fetched, None, (), str(e)
    except Exception as e:  # a parser bug on hostile input: this URL's problem, said as a fetch says it
        log.exception("cannot parse %s", fetched.url)
        return fetched, None, (), f"cannot parse: {type(e).__name__}: {e}"
    settings = SourceSettings.model_validate({"url": url, "categories": tuple(categories)})
    keyed = [(item_key(item), item) for item in feed.items[:settings.max_items]]
    articles = tuple(to_article("check", settings, _stored("check", key, item, None, now), feed.title or url, summary_length)
                     for key, item in keyed if key is not None)
    return fetched, feed, articles, None


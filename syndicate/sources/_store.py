"""The sources' state in the database: each feed's last fetch (source_feeds) and its items (source_items)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from syndicate.storage import Database
from syndicate.storage.schema import source_feeds, source_items


@dataclass(frozen=True)
class FeedState:
    """How fetching one source went last (a row of source_feeds)."""

    name: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    feed_title: str | None = None
    feed_link: str | None = None
    last_fetch_at: datetime | None = None
    last_success_at: datetime | None = None
    last_status: str | None = None  # ok | not-modified | error
    last_http_status: int | None = None
    last_error: str | None = None
    failures: int = 0
    next_fetch_at: datetime | None = None


@dataclass(frozen=True)
class StoredItem:
    """One item of a source as stored (a row of source_items); `item_key` never changes."""

    source: str
    item_key: str
    guid: str | None
    link: str | None
    title: str
    author: str | None
    published: datetime
    updated: datetime
    first_seen: datetime
    last_seen: datetime
    body_html: str
    summary_html: str
    content_hash: str


_ITEM_COLUMNS = tuple(f.name for f in fields(StoredItem))
_STATE_COLUMNS = tuple(f.name for f in fields(FeedState))


class SourceStore:
    """Reads and writes the sources' tables; every method takes or opens its own transaction."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def state(self, name: str) -> FeedState | None:
        with self.database.read() as connection:
            row = connection.execute(select(source_feeds).where(source_feeds.c.name == name)).mappings().first()
        return FeedState(**{k: row[k] for k in _STATE_COLUMNS}) if row else None

    def states(self) -> dict[str, FeedState]:
        with self.database.read() as connection:
            rows = connection.execute(select(source_feeds)).mappings().all()
        return {row["name"]: FeedState(**{k: row[k] for k in _STATE_COLUMNS}) for row in rows}

    def save_state(self, state: FeedState, connection: Connection | None = None) -> None:
        if connection is None:
            with self.database.write() as connection:
                return self.save_state(state, connection)
        values = {k: getattr(state, k) for k in _STATE_COLUMNS}
        done = connection.execute(update(source_feeds).where(source_feeds.c.name == state.name).values(values))
        if done.rowcount == 0:
            connection.execute(insert(source_feeds).values(values))
        return None

    def items(self, names: Iterable[str] | None = None, connection: Connection | None = None) -> list[StoredItem]:
        """The stored items (of `names`, else of every source), newest first."""
        query = select(*(source_items.c[k] for k in _ITEM_COLUMNS)).order_by(
            source_items.c.published.desc(), source_items.c.item_key)
        if names is not None:
            query = query.where(source_items.c.source.in_(list(names)))
        if connection is None:
            with self.database.read() as connection:
                return [StoredItem(*row) for row in connection.execute(query)]
        return [StoredItem(*row) for row in connection.execute(query)]

    def counts(self) -> dict[str, int]:
        with self.database.read() as connection:
            rows = connection.execute(select(source_items.c.source, func.count()).group_by(source_items.c.source))
            return {source: count for source, count in rows}

    def upsert(self, connection: Connection, new: Sequence[StoredItem], changed: Sequence[StoredItem],
               seen: Sequence[str], source: str, now: datetime) -> None:
        if new:
            connection.execute(insert(source_items), [{k: getattr(i, k) for k in _ITEM_COLUMNS} for i in new])
        for item in changed:
            values = {k: getattr(item, k) for k in _ITEM_COLUMNS if k not in ("source", "item_key", "first_seen")}
            connection.execute(update(source_items).where(
                source_items.c.source == source, source_items.c.item_key == item.item_key).values(values))
        if seen:
            connection.execute(update(source_items).where(
                source_items.c.source == source, source_items.c.item_key.in_(list(seen))).values(last_seen=now))

    def prune(self, connection: Connection, source: str, keep: int) -> int:
        """Delete the source's items beyond the newest `keep`; how many went."""
        kept = select(source_items.c.id).where(source_items.c.source == source).order_by(
            source_items.c.published.desc(), source_items.c.id.desc()).limit(keep).scalar_subquery()
        done = connection.execute(delete(source_items).where(source_items.c.source == source, source_items.c.id.not_in(kept)))
        return done.rowcount or 0

"""The suppression list: addresses and whole domains that never get mail, whoever asks."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select

from syndicate.content import xml_safe
from syndicate.errors import UsageError
from syndicate.storage import Database
from syndicate.storage.schema import suppressions
from syndicate.subscribers._address import InvalidAddressError, parse_address

log = logging.getLogger(__name__)

SOURCES = ("operator", "import", "api", "bounce", "complaint")
_CHUNK = 1000


@dataclass(frozen=True)
class Suppression:
    id: int
    kind: str  # address or domain
    value: str
    reason: str
    source: str
    event_id: int | None
    created_at: datetime


def parse_entry(text: str) -> tuple[str, str]:
    """(kind, value) of `user@host` (an address) or `@host` / `host` (a whole domain); UsageError otherwise."""
    entry = text.strip()
    if not entry:
        raise UsageError("suppression: empty entry")
    if entry.startswith("@") or "@" not in entry:
        domain = entry.lstrip("@").strip().lower().rstrip(".")
        labels = domain.split(".")
        if len(labels) < 2 or not all(labels) or any(not all(c.isalnum() or c == "-" for c in label) for label in labels):
            raise UsageError(f"suppression: {text.strip()!r} is neither an address nor a domain such as example.com")
        return "domain", domain
    try:
        return "address", parse_address(entry).key
    except InvalidAddressError as e:
        raise UsageError(f"suppression: {e}") from None


def _domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


@dataclass(frozen=True)
class SuppressedSet:
    """The list at one moment, for checking many addresses (planning a run) without a query each."""

    addresses: frozenset[str]
    domains: frozenset[str]

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        key = address.strip().lower()
        domain = _domain_of(key)
        return key in self.addresses or any(domain == d or domain.endswith("." + d) for d in self._suffixes(domain))

    def _suffixes(self, domain: str) -> Iterator[str]:
        labels = domain.split(".")
        for i in range(len(labels) - 1):
            suffix = ".".join(labels[i:])
            if suffix in self.domains:
                yield suffix


class SuppressionList:
    """Reads and writes the suppressions table. A domain entry covers its subdomains too."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def is_suppressed(self, address: str) -> bool:
        key = address.strip().lower()
        labels = _domain_of(key).split(".")
        domains = [".".join(labels[i:]) for i in range(len(labels) - 1)]
        c = suppressions.c
        query = select(c.id).where(
            ((c.kind == "address") & (c.value == key)) | ((c.kind == "domain") & c.value.in_(domains))
        ).limit(1)
        with self.database.read() as connection:
            return connection.execute(query).first() is not None

    def snapshot(self) -> SuppressedSet:
        c = suppressions.c
        with self.database.read() as connection:
            rows = connection.execute(select(c.kind, c.value)).all()
        return SuppressedSet(
            frozenset(v for k, v in rows if k == "address"), frozenset(v for k, v in rows if k == "domain"),
        )

    def add(self, entry: str, *, reason: str, source: str, now: datetime, event_id: int | None = None,
            connection: Connection | None = None) -> bool:
        """Suppress `entry` (address or domain); False when it already was."""
        kind, value = parse_entry(entry)
        return self._add_many([(kind, value)], reason=reason, source=source, now=now, event_id=event_id, connection=connection) == 1

    def _add_many(self, entries: Iterable[tuple[str, str]], *, reason: str, source: str, now: datetime,
                  event_id: int | None = None, connection: Connection | None = None) -> int:
        if source not in SOURCES:
            raise ValueError(f"unknown suppression source {source!r}")
        wanted = list(dict.fromkeys(entries))
        if not wanted:
            return 0
        if connection is None:
            with self.database.write() as own:
                return self._insert(own, wanted, reason, source, now, event_id)
        return self._insert(connection, wanted, reason, source, now, event_id)

    def _insert(self, connection: Connection, wanted: list[tuple[str, str]], reason: str, source: str, now: datetime,
                event_id: int | None) -> int:
        c = suppressions.c
        added = 0
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            known = set(connection.execute(
                select(c.kind, c.value).where(c.value.in_([v for _, v in chunk]))
            ).all())
            fresh = [{"kind": k, "value": v, "reason": xml_safe(reason)[:500], "source": source, "event_id": event_id, "created_at": now}
                     for k, v in chunk if (k, v) not in known]
            if fresh:
                connection.execute(insert(suppressions), fresh)
                added += len(fresh)
        if added:
            log.info("suppressed entries=%s source=%s event=%s", added, source, event_id)  # never the address itself
        return added

    def import_entries(self, lines: Iterable[str], *, reason: str, source: str, now: datetime) -> tuple[int, list[str]]:
        """(added, problems): one entry per line (or the first CSV field); `#` comments and blank lines skipped."""
        entries: list[tuple[str, str]] = []
        problems: list[str] = []
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].split(",", 1)[0].strip().strip('"')
            if not text or text.lower() in ("email", "address", "value"):
                continue
            try:
                entries.append(parse_entry(text))
            except UsageError as e:
                problems.append(f"line {number}: {e}")
        return self._add_many(entries, reason=reason, source=source, now=now), problems

    def remove(self, entry: str) -> bool:
        kind, value = parse_entry(entry)
        c = suppressions.c
        with self.database.write() as connection:
            removed = connection.execute(delete(suppressions).where(c.kind == kind, c.value == value)).rowcount
        if removed:
            log.info("suppression removed kind=%s", kind)
        return bool(removed)

    def remove_for_event(self, event_id: int, connection: Connection) -> int:
        """Lift what one bounce event suppressed (its change was reverted)."""
        return connection.execute(delete(suppressions).where(suppressions.c.event_id == event_id)).rowcount

    def list(self, *, kind: str | None = None, after: int = 0, limit: int = 1000) -> list[Suppression]:
        c = suppressions.c
        query = select(suppressions).where(c.id > after).order_by(c.id).limit(limit)
        if kind is not None:
            query = query.where(c.kind == kind)
        with self.database.read() as connection:
            return [Suppression(*row) for row in connection.execute(query).all()]

    def iter_all(self, *, kind: str | None = None, batch: int = 1000) -> Iterator[Suppression]:
        after = 0
        while True:
            page = self.list(kind=kind, after=after, limit=batch)
            yield from page
            if len(page) < batch:
                return
            after = page[-1].id

    def count(self) -> int:
        with self.database.read() as connection:
            return connection.execute(select(func.count()).select_from(suppressions)).scalar_one()

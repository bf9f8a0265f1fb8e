"""Sending limits shared by every worker through PostgreSQL: the deployment's rate, per-domain pacing, connection slots.

A rate is a row of `send_limits` holding the time of its next free slot (the database's clock).
A worker reserves a block of slots in one UPDATE (`next_at = greatest(next_at, now) + n / rate`)
and sends message i of the block at `start + i / rate`: however many workers there are, slots
never overlap, so the deployment's rate holds (a block reserved and not used is lost, never
lent: the rate errs on the slow side). No burst is kept: an idle limit starts again from now.

`[smtp] connections` are rows 0..connections-1 of `smtp_connection_slots`; a worker leases as many
as it wants and finds free (or expired: their worker stopped heartbeating) and opens one SMTP
connection per slot it holds.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import text

from syndicate.storage import Database

log = logging.getLogger(__name__)

BLOCK_SECONDS = 0.05  # slots reserved per round trip: this long at the full rate (at least one)

_RESERVE = text(
    "INSERT INTO send_limits (name, next_at) VALUES (:name, clock_timestamp() + make_interval(secs => :span)) "
    "ON CONFLICT (name) DO UPDATE SET next_at = greatest(send_limits.next_at, clock_timestamp()) "
    "+ make_interval(secs => :span) "
    "RETURNING extract(epoch FROM (send_limits.next_at - clock_timestamp())) AS ends_in"
)
_CREATE_SLOTS = text(
    "INSERT INTO smtp_connection_slots (slot) SELECT generate_series(0, :total - 1) ON CONFLICT (slot) DO NOTHING"
)
_LEASE_SLOTS = text(
    "UPDATE smtp_connection_slots SET worker = :worker, expires_at = now() + make_interval(secs => :ttl) "
    "WHERE slot IN (SELECT slot FROM smtp_connection_slots WHERE slot < :total "
    "AND (worker IS NULL OR worker = :worker OR expires_at < now()) "
    "ORDER BY slot LIMIT :want FOR UPDATE SKIP LOCKED) RETURNING slot"
)
_RELEASE_SLOTS = text("UPDATE smtp_connection_slots SET worker = NULL, expires_at = NULL WHERE worker = :worker")


class SharedRate:
    """One rate (messages a second) held across every process that uses the same `name`."""

    def __init__(self, database: Database, name: str, rate: float) -> None:
        self.database = database
        self.name = name
        self.rate = rate
        self.block = max(1, round(rate * BLOCK_SECONDS))
        self._slots: list[float] = []  # monotonic times of the slots reserved and not used yet

    def reserve(self, count: int) -> list[float]:
        """Reserve `count` consecutive slots; their times on this process's monotonic clock."""
        span = count / self.rate
        with self.database.write() as connection:
            ends_in = float(connection.execute(_RESERVE, {"name": self.name, "span": span}).scalar_one())
        start = time.monotonic() + ends_in - span
        return [start + i / self.rate for i in range(count)]

    def next_slot(self) -> float:
        """The time of this process's next slot (reserving a block when none is left)."""
        if not self._slots:
            self._slots = self.reserve(self.block)
        return self._slots.pop(0)

    def wait(self, stop: threading.Event | None) -> bool:
        """Wait for the next slot; False when `stop` was set meanwhile (the slot is then lost)."""
        delay = self.next_slot() - time.monotonic()
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            time.sleep(delay)
        return stop is None or not stop.is_set()


def domain_rates(database: Database, rates: dict[str, float]) -> dict[str, SharedRate]:
    """`[smtp] domain_rate` as shared rates, by lower-case domain."""
    return {domain.lower(): SharedRate(database, f"domain:{domain.lower()}", rate) for domain, rate in rates.items()}


class ConnectionSlots:
    """This worker's share of `[smtp] connections`, leased for `ttl` seconds (renewed by its heartbeat)."""

    def __init__(self, database: Database, worker: str, *, total: int, ttl: float) -> None:
        self.database = database
        self.worker = worker
        self.total = total
        self.ttl = ttl

    def lease(self, want: int) -> int:
        """Take up to `want` free slots (keeping those already held); how many this worker holds now."""
        with self.database.write() as connection:
            connection.execute(_CREATE_SLOTS, {"total": self.total})
            held = connection.execute(
                _LEASE_SLOTS, {"worker": self.worker, "ttl": self.ttl, "total": self.total, "want": want}
            ).scalars().all()
        return len(held)

    def release(self) -> None:
        with self.database.write() as connection:
            connection.execute(_RELEASE_SLOTS, {"worker": self.worker})


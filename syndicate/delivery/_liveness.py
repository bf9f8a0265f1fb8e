"""Workers across hosts: their registration and heartbeats, claims from any run, and recovery of a lost worker's claims.

Every `syndicate worker` process has a row in `delivery_workers` and writes the database's clock
into its `heartbeat_at` every claim_timeout / 3. Its claims are the deliveries `sending` with
`claimed_by` = its id. A worker whose heartbeat is older than `[outbox] claim_timeout` (host lost,
kill -9, a network split) is lost: any other worker deletes its row and, in the same transaction,
puts its claims back per `[outbox] in_flight` (Outbox.release_in_flight). Liveness is judged only
by the database's clock, never by a process table or a host's clock, so it holds across hosts.

A worker that cannot write its heartbeat for half the timeout, or finds its row deleted, stops
sending at once (it is fenced): its claims are, or soon will be, someone else's.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, select, update

from syndicate.delivery._outbox import (
    _CHOSEN_DUE,
    _CLAIM,
    _CLAIM_DUE_IN_ONE,
    QUEUED,
    SENDING,
    ClaimedDelivery,
    Outbox,
    _claim_in_one,
    _claimed,
    claimed_rows,
)
from syndicate.errors import ConfigError
from syndicate.storage import Database
from syndicate.storage.schema import deliveries, delivery_workers, runs, scheduler_lease, smtp_connection_slots

log = logging.getLogger(__name__)

_d = deliveries.c
_CHOSEN_ANY = (
    select(_d.id).where(_d.status == QUEUED).order_by(_d.id).limit(bindparam("limit")).with_for_update(skip_locked=True)
)
_CLAIM_ANY_IN_ONE = _claim_in_one(_CHOSEN_ANY)


def require_workers_database(mode: str, database_url: str) -> None:
    """`[delivery] mode = "workers"` needs PostgreSQL (row locks shared by processes on several hosts)."""
    if mode == "workers" and not database_url.startswith("postgresql"):
        raise ConfigError(
            ['[delivery] mode: "workers" needs PostgreSQL, but [database] url is '
             f'{database_url.split(":", 1)[0]}'],
            hint='use mode = "inline" with SQLite (the service sends itself), or point [database] url at PostgreSQL',
        )


def claim_any(outbox: Outbox, now: datetime, limit: int) -> list[ClaimedDelivery]:
    """Up to `limit` deliveries marked `sending` by `outbox.worker`: retries whose time has come
    first, then queued ones of any run (scheduled, manual, resumed), oldest first; one transaction."""
    values = {"now": now, "limit": limit, "worker": outbox.worker}
    with outbox.database.write() as connection:
        if connection.dialect.name == "postgresql":  # each kind chosen, marked and read in one statement
            claimed = [_claimed(row) for row in connection.execute(_CLAIM_DUE_IN_ONE, values).all()]
            if len(claimed) < limit:
                more = {**values, "limit": limit - len(claimed)}
                claimed += [_claimed(row) for row in connection.execute(_CLAIM_ANY_IN_ONE, more).all()]
            return claimed
        chosen = list(connection.execute(_CHOSEN_DUE, values).scalars())
        if len(chosen) < limit:
            chosen += connection.execute(_CHOSEN_ANY, {**values, "limit": limit - len(chosen)}).scalars()
        if not chosen:
            return []
        ids = connection.execute(_CLAIM, {**values, "ids": chosen}).scalars().all()
        return claimed_rows(connection, ids)


class WorkerRegistry:
    """This worker's row in `delivery_workers`, and the recovery of the lost ones."""

    def __init__(self, outbox: Outbox, *, concurrency: int, claim_timeout: float, pid: int) -> None:
        self.outbox = outbox
        self.database: Database = outbox.database
        self.id = outbox.worker
        self.concurrency = concurrency
        self.claim_timeout = timedelta(seconds=claim_timeout)
        self.pid = pid

    def register(self) -> None:
        with self.database.write() as connection:
            connection.execute(insert(delivery_workers).values(
                id=self.id, host=socket.gethostname()[:255], pid=self.pid, concurrency=self.concurrency,
                started_at=func.now(), heartbeat_at=func.now(),
            ))
        log.info("worker registered worker=%s concurrency=%s", self.id, self.concurrency)

    def beat(self) -> bool:
        """Renew the heartbeat (and the connection slots held); False when this worker was declared lost."""
        w = delivery_workers.c
        with self.database.write() as connection:
            alive = connection.execute(
                update(delivery_workers).where(w.id == self.id).values(heartbeat_at=func.now())
            ).rowcount == 1
            if alive:
                s = smtp_connection_slots.c
                connection.execute(update(smtp_connection_slots).where(s.worker == self.id)
                                   .values(expires_at=func.now() + self.claim_timeout))
        return alive

    def recover_lost(self, now: datetime) -> int:
        """Declare the workers silent for claim_timeout lost and release their claims; returns how many."""
        w = delivery_workers.c
        with self.database.write() as connection:
            lost = connection.execute(
                delete(delivery_workers).where(w.heartbeat_at < func.now() - self.claim_timeout).returning(w.id, w.host, w.pid)
            ).all()
            if not lost:
                return 0
            ids = [row.id for row in lost]
            count = self.outbox.release_in_flight(connection, and_(_d.status == SENDING, _d.claimed_by.in_(ids)), now)
            _free_slots(connection, ids)
        for row in lost:
            log.warning("worker lost (no heartbeat for %ss) worker=%s host=%s pid=%s: its claims released by worker=%s",
                        int(self.claim_timeout.total_seconds()), row.id, row.host, row.pid, self.id)
        log.warning("recovered deliveries of lost workers count=%s policy=%s", count, self.outbox.settings.in_flight)
        return count

    def unregister(self, now: datetime) -> int:
        """Leave: whatever this worker still has `sending` (nothing after a clean stop) follows the
        in_flight policy, its slots are freed and its row deleted. Returns the deliveries released."""
        with self.database.write() as connection:
            count = self.outbox.release_in_flight(
                connection, and_(_d.status == SENDING, _d.claimed_by == self.id), now)
            _free_slots(connection, [self.id])
            connection.execute(delete(delivery_workers).where(delivery_workers.c.id == self.id))
        log.info("worker left worker=%s released=%s", self.id, count)
        return count


def _free_slots(connection: Connection, workers: list[str]) -> None:
    s = smtp_connection_slots.c
    connection.execute(update(smtp_connection_slots).where(s.worker.in_(workers)).values(worker=None, expires_at=None))


def live_workers(database: Database, claim_timeout: float) -> int:
    """Workers whose heartbeat is younger than claim_timeout."""
    w = delivery_workers.c
    with database.read() as connection:
        return int(connection.execute(
            select(func.count()).select_from(delivery_workers)
            .where(w.heartbeat_at >= func.now() - timedelta(seconds=claim_timeout))
        ).scalar_one())


def runs_in_flight(database: Database) -> int:
    with database.read() as connection:
        return int(connection.execute(select(func.count()).select_from(runs).where(runs.c.status == "running")).scalar_one())


def deployment_state(database: Database, claim_timeout: float, now: datetime) -> dict[str, object]:
    """What the metrics' outbox gauges show: open deliveries by status, runs in flight, live
    workers (PostgreSQL only: none on SQLite), the scheduler lease holder (host, pid) unless expired."""
    with database.read() as connection:
        queue = dict.fromkeys(("queued", "sending", "retry"), 0)
        queue.update(connection.execute(
            select(_d.status, func.count()).where(_d.status.in_(tuple(queue))).group_by(_d.status)
        ).all())
        lease = connection.execute(
            select(scheduler_lease.c.host, scheduler_lease.c.pid)
            .where(scheduler_lease.c.name == "scheduler", scheduler_lease.c.expires_at > now)
        ).first()
    return {"queue": queue, "runs_in_flight": runs_in_flight(database), "workers": live_workers(database, claim_timeout) if database.dialect == "postgresql" else 0,
            "lease": None if lease is None else (lease.host, lease.pid)}

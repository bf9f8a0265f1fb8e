"""The scheduler lease: at most one process per database runs the scheduler; another stands by and takes over."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from syndicate.storage import Database, DatabaseError
from syndicate.storage.schema import scheduler_lease
from syndicate.wiring import utc_now

log = logging.getLogger(__name__)

SCHEDULER = "scheduler"


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease, from where, and until when."""

    owner: str
    host: str
    pid: int
    acquired_at: datetime
    expires_at: datetime


class Lease:
    """A named, expiring lease row in the database.

    `acquire()` takes the lease when it is free or expired and renews it when this owner
    holds it; one conditional UPDATE decides, so two processes never both win. Expiry is
    judged by the acquiring process's clock (`clock`, injectable for tests).
    """

    def __init__(
        self,
        database: Database,
        *,
        seconds: float,
        clock: Callable[[], datetime] = utc_now,
        name: str = SCHEDULER,
        owner: str | None = None,
    ) -> None:
        self.database = database
        self.seconds = seconds
        self.clock = clock
        self.name = name
        self.owner = owner or uuid.uuid4().hex
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()

    def acquire(self) -> bool:
        """Take or renew the lease for `seconds` from now; False while another live owner holds it."""
        now = self.clock()
        c = scheduler_lease.c
        values = {
            "owner": self.owner, "host": self.host, "pid": self.pid, "expires_at": now + timedelta(seconds=self.seconds),
            "acquired_at": case((c.owner == self.owner, c.acquired_at), else_=now),
        }
        with self.database.write() as connection:
            taken = connection.execute(
                update(scheduler_lease)
                .where(c.name == self.name, (c.owner == self.owner) | (c.expires_at <= now))
                .values(**values)
            ).rowcount
            exists = taken or connection.execute(select(c.name).where(c.name == self.name)).first() is not None
        if taken:
            return True
        if exists:
            return False
        try:
            with self.database.write() as connection:
                connection.execute(insert(scheduler_lease).values(name=self.name, **{**values, "acquired_at": now}))
        except IntegrityError:  # another process inserted it first
            return False
        return True

    def release(self) -> None:
        """Give the lease up at once (if this owner holds it), so a standby takes over without waiting."""
        c = scheduler_lease.c
        with self.database.write() as connection:
            connection.execute(delete(scheduler_lease).where(c.name == self.name, c.owner == self.owner))

    def holder(self) -> LeaseHolder | None:
        """The current holder, expired or not; None when nobody ever took it (or it was released)."""
        c = scheduler_lease.c
        with self.database.read() as connection:
            row = connection.execute(select(scheduler_lease).where(c.name == self.name)).first()
        if row is None:
            return None
        return LeaseHolder(row.owner, row.host, row.pid, row.acquired_at, row.expires_at)


class LeaseKeeper:
    """Keeps a lease with a heartbeat every `lease.seconds / 3`, in a thread of its own.

    `on_acquired` runs when this process gains the lease (start the scheduler); `on_lost` when it
    loses it or stops (shut the scheduler down). While another process holds it, this one stands
    by and says so in the log.
    """

    def __init__(self, lease: Lease, *, on_acquired: Callable[[], None], on_lost: Callable[[], None]) -> None:
        self.lease = lease
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.interval = lease.seconds / 3
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._standby_for: str | None = None

    @property
    def alive(self) -> bool:
        """Whether the heartbeat thread runs (this process holds the lease or stands by)."""
        return self._thread is not None and self._thread.is_alive()

    def beat(self) -> bool:
        """One heartbeat: take or renew the lease and react to any change; whether we hold it."""
        try:
            acquired = self.lease.acquire()
        except (SQLAlchemyError, DatabaseError) as e:
            log.warning("scheduler lease: database error, treating the lease as lost: %s", e)
            acquired = False
        if acquired and not self.held:
            self.held = True
            self._standby_for = None
            log.info("scheduler lease acquired owner=%s host=%s pid=%s", self.lease.owner, self.lease.host, self.lease.pid)
            self._call(self.on_acquired, "starting")
        elif not acquired and self.held:
            self.held = False
            log.warning("scheduler lease lost owner=%s: stopping the scheduler", self.lease.owner)
            self._call(self.on_lost, "stopping")
        elif not acquired:
            self._log_standby()
        return self.held

    def _call(self, action: Callable[[], None], what: str) -> None:
        try:
            action()
        except Exception:  # the heartbeat must go on; the next beat retries
            log.exception("scheduler lease: %s the scheduler failed", what)

    def _log_standby(self) -> None:
        try:
            holder = self.lease.holder()
        except (SQLAlchemyError, DatabaseError):
            return
        if holder is None or holder.owner == self._standby_for:
            return
        self._standby_for = holder.owner
        log.info(
            "standing by: the scheduler runs in another process owner=%s host=%s pid=%s lease_expires=%s",
            holder.owner, holder.host, holder.pid, holder.expires_at.isoformat(),
        )

    def start(self) -> None:
        """First heartbeat now, then every interval in a daemon thread."""
        self.beat()
        self._thread = threading.Thread(target=self._run, name="scheduler-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        """Stop the heartbeat; if held, shut the scheduler down (`on_lost`) and release the lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.held:
            self.held = False
            self._call(self.on_lost, "stopping")
            try:
                self.lease.release()
                log.info("scheduler lease released owner=%s", self.lease.owner)
            except (SQLAlchemyError, DatabaseError) as e:
                log.warning("scheduler lease: could not release (it expires by itself): %s", e)

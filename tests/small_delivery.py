"""SmallDeliveryService: a real, small stand-in for syndicate.delivery.DeliveryService, for the scheduler tests
while the outbox is being built. It plans from the real SubscriberStore (iter_due, advance_schedule) with
the same grace rule, and "sends" by recording (email, time) in `sent`; nothing here is mocked."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from syndicate.db import Database
from syndicate.subscribers import SubscriberStore

log = logging.getLogger("tests.small_delivery")


@dataclass(frozen=True)
class SmallRunReport:
    run_id: int
    total: int
    sent: int = 0


@dataclass
class SmallDeliveryService:
    database: Database
    sent: list[tuple[str, datetime]] = field(default_factory=list)
    skipped: list[tuple[str, datetime]] = field(default_factory=list)
    runs: dict[int, list[str]] = field(default_factory=dict)
    pruned_before: list[datetime] = field(default_factory=list)
    retried_at: list[datetime] = field(default_factory=list)
    on_message: object = None  # called after each message (tests use it to stop in the middle of a run)

    @property
    def store(self) -> SubscriberStore:
        return SubscriberStore(self.database)

    def plan_scheduled(self, now: datetime, *, grace: timedelta) -> SmallRunReport:
        store = self.store
        due = []
        for subscriber in list(store.iter_due(now)):
            scheduled = store.details(subscriber.id).next_send_at
            if scheduled is not None and now - scheduled > grace:
                log.warning("digest skipped: too late subscriber=%s scheduled=%s", subscriber.id, scheduled.isoformat())
                self.skipped.append((subscriber.email, scheduled))
            else:
                due.append(subscriber.email)
            store.advance_schedule(subscriber.id, now)
        run_id = len(self.runs) + 1
        self.runs[run_id] = due
        return SmallRunReport(run_id, len(due))

    def work(self, run_id: int, *, now: datetime | None = None, stop: threading.Event | None = None) -> SmallRunReport:
        count = 0
        for email in self.runs[run_id]:
            if stop is not None and stop.is_set():
                break
            self.sent.append((email, now))
            count += 1
            if callable(self.on_message):
                self.on_message()
        return SmallRunReport(run_id, len(self.runs[run_id]), count)

    def retry_due(self, now: datetime, *, stop: threading.Event | None = None) -> SmallRunReport:
        self.retried_at.append(now)
        return SmallRunReport(0, 0)

    def prune(self, older_than: datetime) -> int:
        self.pruned_before.append(older_than)
        return 0

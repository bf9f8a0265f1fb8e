"""The bounce events table: every bounce, complaint, unsubscribe request and ignored auto-reply, with its raw message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from syndicate.storage import Database
from syndicate.storage.schema import bounce_events, deliveries, runs

_SUMMARY = (
    bounce_events.c.id, bounce_events.c.received_at, bounce_events.c.kind, bounce_events.c.source,
    bounce_events.c.delivery_id, bounce_events.c.subscriber_id, bounce_events.c.recipient,
    bounce_events.c.status_code, bounce_events.c.diagnostic, bounce_events.c.method, bounce_events.c.truncated,
)


@dataclass(frozen=True)
class BounceEvent:
    """One recorded event; `raw` only when asked for (show), else b''."""

    id: int
    received_at: datetime
    kind: str
    source: str
    delivery_id: int | None
    subscriber_id: int | None
    recipient: str | None
    status_code: str | None
    diagnostic: str
    method: str
    truncated: int
    raw: bytes = b""


@dataclass(frozen=True)
class Rates:
    """Bounces and complaints against the messages sent in a period."""

    sent: int
    hard: int
    soft: int
    complaints: int

    @property
    def bounce_rate(self) -> float:
        return (self.hard + self.soft) / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0


class BounceEvents:
    def __init__(self, database: Database) -> None:
        self.database = database

    def insert(self, connection: Connection, values: dict[str, object]) -> int | None:
        """The new event's id, or None when this source already recorded the same fingerprint."""
        c = bounce_events.c
        known = connection.execute(
            select(c.id).where(c.source == values["source"], c.fingerprint == values["fingerprint"])
        ).first()
        if known is not None:
            return None
        return int(connection.execute(insert(bounce_events).values(**values)).inserted_primary_key[0])  # type: ignore[index]

    def count_for(self, connection: Connection, subscriber_id: int, kind: str, since: datetime) -> int:
        c = bounce_events.c
        return connection.execute(
            select(func.count()).select_from(bounce_events)
            .where(c.subscriber_id == subscriber_id, c.kind == kind, c.received_at >= since)
        ).scalar_one()

    def list(self, *, kind: str | None = None, since: datetime | None = None, subscriber_id: int | None = None,
             limit: int = 100) -> list[BounceEvent]:
        c = bounce_events.c
        query = select(*_SUMMARY).order_by(c.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(c.kind == kind)
        if since is not None:
            query = query.where(c.received_at >= since)
        if subscriber_id is not None:
            query = query.where(c.subscriber_id == subscriber_id)
        with self.database.read() as connection:
            return [BounceEvent(*row) for row in connection.execute(query).all()]

    def get(self, event_id: int) -> BounceEvent | None:
        with self.database.read() as connection:
            row = connection.execute(select(*_SUMMARY, bounce_events.c.raw).where(bounce_events.c.id == event_id)).first()
        return BounceEvent(*row) if row is not None else None

    def rates(self, since: datetime, *, run_id: int | None = None) -> Rates:
        """Events received since `since` against deliveries sent since then (or those of run `run_id`)."""
        c, d = bounce_events.c, deliveries.c
        with self.database.read() as connection:
            if run_id is not None:
                sent = connection.execute(select(func.count()).select_from(deliveries).where(d.run_id == run_id, d.status == "sent")).scalar_one()
                ids = select(d.id).where(d.run_id == run_id)
                where: list[Any] = [c.delivery_id.in_(ids)]
            else:
                sent = connection.execute(select(func.count()).select_from(deliveries).where(d.sent_at >= since)).scalar_one()
                where = [c.received_at >= since]
            counts: dict[str, int] = dict(connection.execute(
                select(c.kind, func.count()).where(*where).group_by(c.kind)
            ).all())
        return Rates(sent, counts.get("hard", 0), counts.get("soft", 0), counts.get("complaint", 0))

    def last_run(self) -> int | None:
        with self.database.read() as connection:
            return connection.execute(select(func.max(runs.c.id)).where(runs.c.kind != "retry")).scalar_one()


def deliverability(events: BounceEvents, now: datetime, *, bounce_warning: float, complaint_warning: float) -> dict[str, object]:
    """Bounces and complaints over the last run and the last 7 days, as counts and rates, with warnings."""
    from datetime import timedelta

    result: dict[str, object] = {}
    warnings: list[str] = []
    last = events.last_run()
    periods: list[tuple[str, Rates]] = [("last_7_days", events.rates(now - timedelta(days=7)))]
    if last is not None:
        periods.insert(0, ("last_run", events.rates(now, run_id=last)))
    for name, rates in periods:
        result[name] = {
            "sent": rates.sent, "hard": rates.hard, "soft": rates.soft, "complaints": rates.complaints,
            "bounce_rate": round(rates.bounce_rate, 5), "complaint_rate": round(rates.complaint_rate, 5),
        }
        label = name.replace("_", " ")
        if rates.bounce_rate > bounce_warning:
            warnings.append(f"bounce rate over the {label} is {rates.bounce_rate:.2%} (above {bounce_warning:.2%}): "
                            "clean the list, check the bounce mailbox")
        if rates.complaint_rate > complaint_warning:
            warnings.append(f"complaint rate over the {label} is {rates.complaint_rate:.2%} (above {complaint_warning:.2%}): "
                            "mailbox providers block senders above 0.3%")
    result["last_run_id"] = last
    result["warnings"] = warnings
    return result

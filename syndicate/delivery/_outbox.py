"""The outbox: runs and their deliveries in the database, and every change of a delivery's state.

A delivery is one subscriber's digest, fixed when it is planned (its articles, its range and
its Message-ID) and unique twice over: UNIQUE(subscriber, since_key, until) means the same
digest is never recorded twice, and `open_subscriber_id` (the subscriber while the delivery
is queued, sending or waiting for a retry, NULL once it ends; UNIQUE, NULLs distinct) means a
subscriber never has two digests under way at once. Planning inserts with "skip on conflict",
so a scheduled run and a manual send planned together give one delivery per subscriber.

States: queued -> sending -> sent | retry (-> sending again) | failed | skipped.
`sent` also moves the subscriber's high-water mark to the digest's `until`, in the same
transaction; nothing else moves it. Subscriber state (that mark, a bounce, the next send time)
is written through the SubscriberStore's writes within the outbox's own transaction.

Crash policy (`[outbox] in_flight`): a delivery is marked `sending` (and committed) before its
message goes to the backend, and its result is recorded within about 0.2 s of the server's
reply. A process killed in between leaves deliveries in `sending` that may or may not have
reached the server. `recover()` (run by every sender at start) finds those whose claiming
process is gone: with "resend" (the default, loses nothing) they go back to `queued` and are
sent again with the same Message-ID, so a receiver can drop the copy; with "fail" they are
marked failed ("in flight at a crash") and never sent twice, at the risk of losing them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Integer,
    Row,
    Text,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from syndicate.config import OutboxSettings
from syndicate.storage import Database
from syndicate.storage.schema import campaigns, deliveries, runs, subscriber_categories, subscriber_issues, subscribers
from syndicate.subscribers import Frequency, Subscriber, SubscriberStatus, SubscriberStore, SubscriberWrites

log = logging.getLogger(__name__)

QUEUED, SENDING, SENT, RETRY, FAILED, SKIPPED = "queued", "sending", "sent", "retry", "failed", "skipped"
OPEN = (QUEUED, SENDING, RETRY)
FIRST = "first"  # the since_key of a subscriber's first digest
CAMPAIGN_KEY = "campaign:"  # the since_key of a campaign's deliveries: "campaign:<id>" (one per subscriber)
COUNTS = ("total", "queued", "sending", "sent", "retrying", "failed", "skipped")
_COUNT_OF = {QUEUED: "queued", SENDING: "sending", SENT: "sent", RETRY: "retrying", FAILED: "failed", SKIPPED: "skipped"}
_REPLY_MAX = 2000
_IN_CHUNK = 5000
Sections = tuple[tuple[str, tuple[str, ...], int], ...]  # (category slug, article ids, hidden)


def since_key(high_water: datetime | None) -> str:
    return FIRST if high_water is None else high_water.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def campaign_of(since_key_: str) -> int | None:
    """The campaign id of a delivery's since_key, or None for a digest."""
    return int(since_key_[len(CAMPAIGN_KEY):]) if since_key_.startswith(CAMPAIGN_KEY) else None


def campaign_message_id(campaign_id: int, subscriber_id: int, domain: str) -> str:
    """The same on every attempt and every planning of one campaign to one subscriber."""
    return f"<campaign.{campaign_id}.{subscriber_id}@{domain}>"


def worker_token() -> str:
    """Names this process in `claimed_by`: host, pid and a random part."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def process_alive(token: str) -> bool | None:
    """Whether the process that wrote `token` is still running: None when it ran on another host."""
    parts = token.split(":")
    if len(parts) < 3 or ":".join(parts[:-2]) != socket.gethostname()[:80]:
        return None
    try:
        os.kill(int(parts[-2]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


@dataclass(frozen=True)
class RunReport:
    """A run and its deliveries' counts (as last recorded on the run row)."""

    run_id: int
    kind: str  # "scheduled" | "manual" | "retry"
    status: str  # "running" | "finished"
    started_at: datetime
    finished_at: datetime | None
    total: int = 0
    queued: int = 0
    sending: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0

    @classmethod
    def empty(cls, kind: str, now: datetime) -> RunReport:
        """What a run that found nothing to do reports (no row is written for it: run_id 0)."""
        return cls(0, kind, "finished", now, now)


@dataclass(frozen=True)
class PlannedDelivery:
    """A digest to record: who, from which high-water mark, up to when, which articles."""

    subscriber_id: int
    since: datetime
    since_key: str
    until: datetime
    sections: Sections
    message_id: str


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this process marked `sending`, with its subscriber as they are now."""

    id: int
    run_id: int
    subscriber: Subscriber
    since: datetime
    since_key: str
    until: datetime
    sections: Sections
    message_id: str
    attempts: int
    created_at: datetime
    issue: int = 1  # the digest's number in the subscriber's series, as claimed: 1 + those sent before it


@dataclass(frozen=True)
class Result:
    """What became of one claimed delivery: sent, retry, failed or skipped (or queued: never tried)."""

    delivery: ClaimedDelivery
    outcome: str
    code: int | None
    reply: str


@dataclass(frozen=True)
class WaitingRetry:
    delivery_id: int
    run_id: int
    email: str
    attempts: int
    next_attempt_at: datetime | None
    last_code: int | None
    last_reply: str | None


@dataclass(frozen=True)
class Failure:
    delivery_id: int
    run_id: int
    email: str
    attempts: int
    failed_at: datetime
    last_code: int | None
    last_reply: str | None


@dataclass(frozen=True)
class Requeued:
    """What a requeue did: the deliveries queued again, those left failed (with why), the runs touched."""

    delivery_ids: tuple[int, ...]
    refused: tuple[tuple[int, str], ...]
    run_ids: tuple[int, ...]


@dataclass(frozen=True)
class SubscriberDelivery:
    """One of a subscriber's deliveries (digest or campaign), for their history."""

    id: int
    run_id: int
    status: str
    message_id: str
    since_key: str
    attempts: int
    last_code: int | None
    last_reply: str | None
    created_at: datetime
    sent_at: datetime | None

    @property
    def what(self) -> str:
        return f"campaign {self.since_key.removeprefix(CAMPAIGN_KEY)}" if self.since_key.startswith(CAMPAIGN_KEY) else "digest"


@dataclass(frozen=True)
class FailureGroup:
    """Failed deliveries sharing one server reply."""

    reply: str
    code: int | None
    count: int
    last_at: datetime


def _insert_ignoring_conflicts(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING, on every unique constraint, for both dialects."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(deliveries).on_conflict_do_nothing()


class Outbox:
    """Every read and write of runs and deliveries. Times are passed in, timezone-aware."""

    def __init__(self, database: Database, settings: OutboxSettings, worker: str | None = None, *,
                 subscribers: SubscriberStore | None = None) -> None:
        """`subscribers`: the store that owns subscriber state (default: one over `database`)."""
        self.database = database
        self.settings = settings
        self.worker = worker or worker_token()
        self.subscribers = subscribers if subscribers is not None else SubscriberStore(database)

    # -- runs

    def start_run(self, kind: str, request: Mapping[str, Any], now: datetime) -> int:
        with self.database.write() as connection:
            values = {"kind": kind, "status": "running", "started_at": now, "request": json.dumps(dict(request))}
            inserted = connection.execute(insert(runs).values(**values, **dict.fromkeys(COUNTS, 0))).inserted_primary_key
            run_id = int(inserted[0]) if inserted else 0
        log.info("run started run=%s kind=%s", run_id, kind)
        return int(run_id)

    def run_started(self, run_id: int) -> datetime:
        with self.database.read() as connection:
            return connection.execute(select(runs.c.started_at).where(runs.c.id == run_id)).scalar_one()

    def report(self, run_id: int) -> RunReport:
        with self.database.read() as connection:
            row = connection.execute(select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise LookupError(f"no run with id {run_id}")
        return _report(row)

    def recent_runs(self, limit: int = 20) -> list[RunReport]:
        with self.database.read() as connection:
            rows = connection.execute(select(runs).order_by(runs.c.id.desc()).limit(limit)).all()
        return [_report(row) for row in rows]

    def refresh(self, run_id: int, now: datetime) -> RunReport:
        """Recount the run's deliveries onto its row; a run with none open is finished."""
        with self.database.write() as connection:
            self._recount(connection, run_id, now)
        return self.report(run_id)

    def _recount(self, connection: Connection, run_id: int, now: datetime) -> None:
        counts = dict.fromkeys(COUNTS, 0)
        query = select(deliveries.c.status, func.count()).where(deliveries.c.run_id == run_id).group_by(deliveries.c.status)
        for status, number in connection.execute(query):
            counts[_COUNT_OF[status]] = number
            counts["total"] += number
        values: dict[str, Any] = dict(counts)
        if counts["queued"] + counts["sending"] + counts["retrying"] == 0:
            values["status"] = "finished"
            values["finished_at"] = func.coalesce(runs.c.finished_at, now)
        else:
            values["status"] = "running"
            values["finished_at"] = None
        connection.execute(update(runs).where(runs.c.id == run_id).values(**values))
        if values["status"] == "finished":
            log.debug("run counted run=%s %s", run_id, counts)

    def finish_tally(self, kind: str, now: datetime, tally: Mapping[str, int]) -> RunReport:
        """Record a run whose counts are known in memory (a retry pass), finished at `now`."""
        with self.database.write() as connection:
            values = {"kind": kind, "status": "finished", "started_at": now, "finished_at": now, "request": "{}"}
            inserted = connection.execute(
                insert(runs).values(**values, **{name: tally.get(name, 0) for name in COUNTS})
            ).inserted_primary_key
        return self.report(int(inserted[0]) if inserted else 0)

    # -- planning

    def add_deliveries(
        self,
        run_id: int,
        planned: Sequence[PlannedDelivery],
        now: datetime,
        *,
        reschedule: Sequence[tuple[int, datetime]] = (),
    ) -> None:
        """Record `planned` (a digest already recorded, or a subscriber with one open, is skipped)
        and move the `reschedule` subscribers' next send time, in one transaction."""
        with self.database.write() as connection:
            if planned:
                connection.execute(_insert_ignoring_conflicts(self.database.dialect), [
                    {
                        "run_id": run_id, "subscriber_id": p.subscriber_id, "since": p.since, "since_key": p.since_key,
                        "until": p.until, "articles": json.dumps(p.sections), "message_id": p.message_id,
                        "status": QUEUED, "attempts": 0, "open_subscriber_id": p.subscriber_id,
                        "created_at": now, "updated_at": now,
                    }
                    for p in planned
                ])
            self.subscribers.within(connection).reschedule(reschedule)

    def add_campaign_deliveries(self, run_id: int, campaign_id: int, created_at: datetime, subscriber_ids: Sequence[int],
                                domain: str, now: datetime) -> None:
        """Record campaign `campaign_id` for these subscribers: since_key "campaign:<id>" and `until` its
        creation time, so UNIQUE(subscriber, since_key, until) lets each have it once, whatever is
        planned again. Not "open" (open_subscriber_id NULL): it neither waits for nor holds up a digest."""
        if not subscriber_ids:
            return
        key = f"{CAMPAIGN_KEY}{campaign_id}"
        with self.database.write() as connection:
            connection.execute(_insert_ignoring_conflicts(self.database.dialect), [
                {
                    "run_id": run_id, "subscriber_id": sid, "since": created_at, "since_key": key, "until": created_at,
                    "articles": "[]", "message_id": campaign_message_id(campaign_id, sid, domain), "status": QUEUED,
                    "attempts": 0, "open_subscriber_id": None, "created_at": now, "updated_at": now,
                }
                for sid in subscriber_ids
            ])

    def campaign_text(self, campaign_id: int) -> tuple[str, str, str]:
        """(subject, Markdown body, variant) of a campaign, for building its messages."""
        with self.database.read() as connection:
            row = connection.execute(
                select(campaigns.c.subject, campaigns.c.body, campaigns.c.variant).where(campaigns.c.id == campaign_id)
            ).first()
        if row is None:
            raise LookupError(f"no campaign with id {campaign_id}")
        return row.subject, row.body, row.variant

    def campaign_counts(self, campaign_id: int) -> dict[str, int]:
        """How many of a campaign's deliveries are in each state (the COUNTS names)."""
        counts = dict.fromkeys(COUNTS, 0)
        d = deliveries.c
        with self.database.read() as connection:
            for status, number in connection.execute(
                select(d.status, func.count()).where(d.since_key == f"{CAMPAIGN_KEY}{campaign_id}").group_by(d.status)
            ):
                counts[_COUNT_OF[status]] = number
                counts["total"] += number
        return counts

    # -- claiming and recording

    def claim(self, now: datetime, limit: int, *, run_id: int | None = None) -> list[ClaimedDelivery]:
        """Mark up to `limit` deliveries `sending` and return them: the queued ones of `run_id`,
        or (run_id None) those waiting for a retry whose time has come."""
        values = {"of_run": run_id, "now": now, "limit": limit, "worker": self.worker}
        with self.database.write() as connection:
            if connection.dialect.name == "postgresql":
                in_one = _CLAIM_QUEUED_IN_ONE if run_id is not None else _CLAIM_DUE_IN_ONE
                return [_claimed(row) for row in connection.execute(in_one, values).all()]
            # Ids first, then the update (SQLite has no UPDATE in a WITH).
            chosen = _CHOSEN_QUEUED if run_id is not None else _CHOSEN_DUE
            chosen_ids = connection.execute(chosen, values).scalars().all()
            if not chosen_ids:
                return []
            ids = connection.execute(_CLAIM, {**values, "ids": chosen_ids}).scalars().all()
            return claimed_rows(connection, ids)

    def record(self, results: Sequence[Result], now: datetime) -> None:
        """Record results in one transaction (see the module docstring for what each does)."""
        if not results:
            return
        by_outcome: dict[str, list[Result]] = {}
        for result in results:
            by_outcome.setdefault(result.outcome, []).append(result)
        with self.database.write() as connection:
            for outcome, group in by_outcome.items():
                _RECORDERS[outcome](self, connection, group, now)

    def _record_sent(self, connection: Connection, group: list[Result], now: datetime) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(_SENT_ALL, {"dids": [r.delivery.id for r in group], "codes": [r.code for r in group],
                                           "replies": [r.reply[:_REPLY_MAX] for r in group], "now": now})
        else:
            connection.execute(_SENT, [{"did": r.delivery.id, "code": r.code, "reply": r.reply[:_REPLY_MAX], "now": now}
                                       for r in group])
        digests = [r for r in group if not r.delivery.since_key.startswith(CAMPAIGN_KEY)]  # a campaign moves no mark
        if digests:
            self.subscribers.within(connection).move_high_water([(r.delivery.subscriber.id, r.delivery.until) for r in digests])

    def _record_retry(self, connection: Connection, group: list[Result], now: datetime) -> None:
        again, given_up = [], []
        for r in group:
            attempts = r.delivery.attempts + 1
            if attempts >= self.settings.max_attempts or now - r.delivery.created_at >= timedelta(seconds=self.settings.max_age):
                given_up.append(Result(r.delivery, FAILED, r.code, f"gave up after {attempts} attempts: {r.reply}"))
            else:
                again.append((r, now + timedelta(seconds=self.backoff(attempts))))
        if again:
            connection.execute(_RETRY, [{"did": r.delivery.id, "code": r.code, "reply": r.reply[:_REPLY_MAX], "at": at,
                                         "now": now} for r, at in again])
        if given_up:
            self._finish(connection, given_up, FAILED, now, attempted=True)

    def _record_failed(self, connection: Connection, group: list[Result], now: datetime) -> None:
        self._finish(connection, group, FAILED, now, attempted=True)
        for subscriber_id in {r.delivery.subscriber.id for r in group}:
            self._bounce_if_due(connection, subscriber_id, now)

    def _record_skipped(self, connection: Connection, group: list[Result], now: datetime) -> None:
        self._finish(connection, group, SKIPPED, now, attempted=False)

    def _record_queued(self, connection: Connection, group: list[Result], now: datetime) -> None:
        """Claimed but never handed to the server: back in the queue as they were."""
        connection.execute(_BACK, [{"did": r.delivery.id, "back": RETRY if r.delivery.attempts else QUEUED, "now": now}
                                   for r in group])

    def _finish(self, connection: Connection, group: list[Result], status: str, now: datetime, *, attempted: bool) -> None:
        connection.execute(_FINISH, [{"did": r.delivery.id, "status": status, "tried": 1 if attempted else 0, "code": r.code,
                                      "reply": r.reply[:_REPLY_MAX], "now": now} for r in group])

    def _bounce_if_due(self, connection: Connection, subscriber_id: int, now: datetime) -> None:
        """`bounce_after` permanent (5xx) failures in a row, with no digest sent in between: bounced."""
        d = deliveries.c
        last = connection.execute(
            select(d.status, d.last_code).where(d.subscriber_id == subscriber_id, d.status.in_((SENT, FAILED)))
            .order_by(d.id.desc()).limit(self.settings.bounce_after)
        ).all()
        hard = [row for row in last if row.status == FAILED and row.last_code is not None and 500 <= row.last_code < 600]
        if len(hard) < self.settings.bounce_after:
            return
        if self.subscribers.within(connection).mark_bounced(subscriber_id, now):
            log.warning("subscriber bounced id=%s after=%s permanent failures", subscriber_id, len(hard))

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th attempt failed for now."""
        return self.settings.retry_backoff * self.settings.retry_factor ** (attempts - 1)

    # -- recovery, status, pruning

    def recover(self, now: datetime, *, alive: Callable[[str], bool | None] = process_alive,
                stale_after: timedelta = timedelta(hours=1)) -> int:
        """Deliveries left `sending` by a process that is gone (or claimed more than `stale_after`
        ago, by any process): back to the queue ("resend") or failed ("fail"). Returns how many."""
        d = deliveries.c
        with self.database.read() as connection:
            owners = connection.execute(
                select(d.claimed_by, func.max(d.updated_at)).where(d.status == SENDING).group_by(d.claimed_by)
            ).all()
        dead = [owner for owner, last in owners if owner != self.worker and _gone(owner, last, now, alive, stale_after)]
        if not dead:
            return 0
        with self.database.write() as connection:
            owners_gone = d.claimed_by.in_([owner for owner in dead if owner])
            condition = and_(d.status == SENDING, or_(owners_gone, d.claimed_by.is_(None)) if None in dead else owners_gone)
            count = self.release_in_flight(connection, condition, now)
        log.warning("recovered deliveries in flight at a crash count=%s policy=%s", count, self.settings.in_flight)
        return count

    def release_in_flight(self, connection: Connection, condition: Any, now: datetime) -> int:
        """Deliveries matching `condition` (left `sending` by a process that is gone), per `[outbox]
        in_flight`: back to the queue ("resend") or failed ("fail"); their runs recounted."""
        d = deliveries.c
        resend = self.settings.in_flight == "resend"
        run_ids = connection.execute(select(d.run_id).where(condition).distinct()).scalars().all()
        if resend:  # a first attempt goes back to the queue, a retry back to its (due) retry
            count = connection.execute(
                update(deliveries).where(condition).values(
                    status=case((d.attempts > 0, RETRY), else_=QUEUED), claimed_by=None, updated_at=now,
                    next_attempt_at=case((d.attempts > 0, func.coalesce(d.next_attempt_at, now)), else_=None),
                )
            ).rowcount
        else:
            count = connection.execute(
                update(deliveries).where(condition).values(
                    status=FAILED, open_subscriber_id=None, updated_at=now,
                    last_reply="in flight when the sending process stopped ([outbox] in_flight = \"fail\")",
                )
            ).rowcount
        for run_id in run_ids:
            self._recount(connection, run_id, now)
        return int(count)

    def open_runs(self) -> list[int]:
        """Runs not finished yet, oldest first."""
        with self.database.read() as connection:
            return list(connection.execute(select(runs.c.id).where(runs.c.status == "running").order_by(runs.c.id)).scalars())

    def runs_with_queued(self) -> list[int]:
        """Runs with deliveries still queued (an interrupted send), oldest first."""
        d = deliveries.c
        with self.database.read() as connection:
            return list(connection.execute(select(d.run_id).where(d.status == QUEUED).distinct().order_by(d.run_id)).scalars())

    def abandoned_runs(self, idle_since: datetime) -> list[int]:
        """Unfinished runs with queued deliveries that nobody has touched since `idle_since`: the send
        working them stopped (a crash, a shutdown) and no one resumed them."""
        d = deliveries.c
        query = (
            select(d.run_id).join(runs, runs.c.id == d.run_id).where(runs.c.status == "running")
            .group_by(d.run_id)
            .having(and_(func.sum(case((d.status == QUEUED, 1), else_=0)) > 0, func.max(d.updated_at) < idle_since))
            .order_by(d.run_id)
        )
        with self.database.read() as connection:
            return list(connection.execute(query).scalars())

    def waiting_retries(self, limit: int = 100) -> list[WaitingRetry]:
        d = deliveries.c
        query = (
            select(d.id, d.run_id, subscribers.c.email, d.attempts, d.next_attempt_at, d.last_code, d.last_reply)
            .join(subscribers, subscribers.c.id == d.subscriber_id)
            .where(d.status == RETRY).order_by(d.next_attempt_at, d.id).limit(limit)
        )
        with self.database.read() as connection:
            return [WaitingRetry(*row) for row in connection.execute(query)]

    def failures(self, limit: int = 50) -> list[Failure]:
        d = deliveries.c
        query = (
            select(d.id, d.run_id, subscribers.c.email, d.attempts, d.updated_at, d.last_code, d.last_reply)
            .join(subscribers, subscribers.c.id == d.subscriber_id)
            .where(d.status == FAILED).order_by(d.updated_at.desc(), d.id.desc()).limit(limit)
        )
        with self.database.read() as connection:
            return [Failure(*row) for row in connection.execute(query)]

    # -- who is due, requeueing (issue 17)

    def held_back(self, planned: Sequence[PlannedDelivery]) -> dict[int, tuple[int, str]]:
        """Of `planned`, the ones add_deliveries would skip, by subscriber id: (the delivery in the way,
        its status). Either the same digest is already recorded (sent, failed, skipped...) or the
        subscriber has a digest under way. The dry run asks this so it lists exactly who a send records."""
        if not planned:
            return {}
        d = deliveries.c
        wanted = {p.subscriber_id: (p.since_key, p.until) for p in planned}
        found: dict[int, tuple[int, str]] = {}
        keys = sorted(wanted)
        with self.database.read() as connection:
            for start in range(0, len(keys), _IN_CHUNK):
                rows = connection.execute(
                    select(d.id, d.subscriber_id, d.status, d.since_key, d.until, d.open_subscriber_id)
                    .where(d.subscriber_id.in_(keys[start:start + _IN_CHUNK]),
                           or_(d.open_subscriber_id.is_not(None), d.since_key.in_({k for k, _ in wanted.values()})))
                    .order_by(d.id)
                ).all()
                for row in rows:
                    if row.open_subscriber_id is not None or (row.since_key, row.until) == wanted[row.subscriber_id]:
                        found[row.subscriber_id] = (row.id, row.status)
        return found

    def requeue(self, now: datetime, *, delivery_ids: Sequence[int] = (), run_id: int | None = None,
                reply: str | None = None) -> Requeued:
        """Failed deliveries (these ids, those of `run_id`, or those whose last reply is `reply`) back
        to `queued` with the same Message-ID and no attempts counted. One is left failed when its
        subscriber is no longer active, another digest has since been sent to them (it would be
        superseded), or they have a digest under way (one at a time)."""
        d, c = deliveries.c, subscribers.c
        condition = d.status == FAILED
        if delivery_ids:
            condition = and_(condition, d.id.in_(list(delivery_ids)))
        if run_id is not None:
            condition = and_(condition, d.run_id == run_id)
        if reply is not None:
            condition = and_(condition, func.coalesce(d.last_reply, "") == reply)
        requeued: list[int] = []
        refused: list[tuple[int, str]] = []
        with self.database.write() as connection:
            rows = connection.execute(
                select(d.id, d.run_id, d.subscriber_id, d.since_key, c.status, c.high_water)
                .join(subscribers, c.id == d.subscriber_id).where(condition).order_by(d.id)
            ).all()
            open_ones = set(connection.execute(
                select(d.open_subscriber_id).where(d.open_subscriber_id.in_({r.subscriber_id for r in rows}))
            ).scalars()) if rows else set()
            for row in rows:
                if row.status != SubscriberStatus.ACTIVE.value:
                    refused.append((row.id, f"the subscriber is {row.status}"))
                elif not row.since_key.startswith(CAMPAIGN_KEY) and since_key(row.high_water) != row.since_key:
                    refused.append((row.id, "superseded: a later digest was sent to this subscriber"))
                elif row.subscriber_id in open_ones:
                    refused.append((row.id, "the subscriber has another digest under way"))
                else:
                    open_ones.add(row.subscriber_id)
                    requeued.append(row.id)
            for start in range(0, len(requeued), _IN_CHUNK):
                chunk = requeued[start:start + _IN_CHUNK]
                connection.execute(
                    update(deliveries).where(d.id.in_(chunk), d.status == FAILED)
                    .values(status=QUEUED, attempts=0, next_attempt_at=None, claimed_by=None, updated_at=now,
                            open_subscriber_id=case((d.since_key.startswith(CAMPAIGN_KEY), None), else_=d.subscriber_id))
                )
            for touched in sorted({r.run_id for r in rows if r.id in set(requeued)}):
                self._recount(connection, touched, now)
        log.info("deliveries requeued count=%s refused=%s", len(requeued), len(refused))
        return Requeued(tuple(requeued), tuple(refused), tuple(sorted({r.run_id for r in rows if r.id in set(requeued)})))

    def deliveries_of(self, subscriber_id: int, limit: int = 50) -> list[SubscriberDelivery]:
        """A subscriber's deliveries, newest first: what the console shows as their history."""
        d = deliveries.c
        query = (select(d.id, d.run_id, d.status, d.message_id, d.since_key, d.attempts, d.last_code, d.last_reply,
                        d.created_at, d.sent_at)
                 .where(d.subscriber_id == subscriber_id).order_by(d.id.desc()).limit(limit))
        with self.database.read() as connection:
            return [SubscriberDelivery(*row) for row in connection.execute(query)]  # type: ignore[call-arg]

    def failure_groups(self, limit: int = 50) -> list[FailureGroup]:
        """Failed deliveries grouped by the server's last reply, the largest group first."""
        d = deliveries.c
        reply = func.coalesce(d.last_reply, literal_column("''"))  # the same SQL text in SELECT and GROUP BY (PostgreSQL)
        query = (
            select(reply, func.max(d.last_code), func.count(), func.max(d.updated_at))
            .where(d.status == FAILED).group_by(reply)
            .order_by(func.count().desc(), func.max(d.updated_at).desc()).limit(limit)
        )
        with self.database.read() as connection:
            return [FailureGroup(reply, code, count, last) for reply, code, count, last in connection.execute(query)]

    def prune(self, older_than: datetime) -> int:
        """Delete finished runs (and their deliveries) that finished before `older_than`."""
        with self.database.write() as connection:
            ids = connection.execute(
                select(runs.c.id).where(runs.c.status == "finished", runs.c.finished_at < older_than)
            ).scalars().all()
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start:start + _IN_CHUNK]
                _count_out_issues(connection, self.subscribers.within(connection), chunk)
                connection.execute(delete(deliveries).where(deliveries.c.run_id.in_(chunk)))
                connection.execute(delete(runs).where(runs.c.id.in_(chunk)))
        if ids:
            log.info("pruned runs count=%s before=%s", len(ids), older_than.isoformat())
        return len(ids)


_RECORDERS: dict[str, Callable[[Outbox, Connection, list[Result], datetime], None]] = {
    SENT: Outbox._record_sent,
    RETRY: Outbox._record_retry,
    FAILED: Outbox._record_failed,
    SKIPPED: Outbox._record_skipped,
    QUEUED: Outbox._record_queued,
}


def _gone(owner: str | None, last: datetime | None, now: datetime,
          alive: Callable[[str], bool | None], stale_after: timedelta) -> bool:
    if owner is None or last is None or now - last > stale_after:
        return True  # a claim hours old is stuck even if its process lives on (a long-running service)
    state = alive(owner)
    return state is False  # None: another host, not silent for long enough


def _count_out_issues(connection: Connection, writes: SubscriberWrites, run_ids: Sequence[int]) -> None:
    """Before deleting these runs' deliveries, add their sent ones to each subscriber's pruned count."""
    d = deliveries.c
    counts = connection.execute(
        select(d.subscriber_id, func.count()).where(d.run_id.in_(run_ids), d.status == SENT).group_by(d.subscriber_id)
    ).all()
    if not counts:
        return
    writes.count_out_issues({s: n for s, n in counts})


def _report(row: Row[Any]) -> RunReport:
    return RunReport(
        run_id=row.id, kind=row.kind, status=row.status, started_at=row.started_at, finished_at=row.finished_at,
        **{name: getattr(row, name) for name in COUNTS},
    )


def _claimed(row: Any) -> ClaimedDelivery:
    """A row of _with_subscribers as a ClaimedDelivery (unpacked by position: a claim reads 64 rows of
    22 columns, and reading each by name costs a third of making the objects)."""
    (id_, run_id, subscriber_id, since, since_key, until, articles, message_id, attempts, created_at, email, name, status,
     frequency, timezone, send_hour, weekday, high_water, source, categories, sent_before, pruned_sent) = row
    subscriber = Subscriber(
        id=subscriber_id, email=email, name=name, status=SubscriberStatus(status),
        categories=tuple(sorted(categories.split(","))) if categories else (), frequency=Frequency(frequency),
        timezone=timezone, send_hour=send_hour, weekday=weekday, high_water=high_water, source=source,
    )
    return ClaimedDelivery(
        id=id_, run_id=run_id, subscriber=subscriber, since=since, since_key=since_key, until=until,
        sections=tuple((slug, tuple(ids), int(hidden)) for slug, ids, hidden in json.loads(articles)),
        message_id=message_id, attempts=attempts, created_at=created_at, issue=1 + sent_before + pruned_sent,
    )


def claimed_rows(connection: Connection, ids: Sequence[int]) -> list[ClaimedDelivery]:
    """The deliveries `ids` (just marked `sending` in this transaction) with their subscribers as they are now."""
    if not ids:
        return []
    return [_claimed(row) for row in connection.execute(_CLAIMED_ROWS, {"ids": list(ids)}).all()]


def subscriber_states(database: Database, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """(status, since_key of the high-water mark) of each subscriber now: the last check before sending."""
    with database.read() as connection:
        statement = _STATES_ANY if connection.dialect.name == "postgresql" else _STATES
        rows = connection.execute(statement, {"ids": list(ids)}).all()
    return {row.id: (row.status, since_key(row.high_water)) for row in rows}


# The statements of the sending loop, built once: SQLAlchemy then skips building and hashing them
# per call (half of what a 16-subscriber check cost), and the ids go in as one expanding parameter.
_d, _s, _sc = deliveries.c, subscribers.c, subscriber_categories.c
_QUEUED_OF_RUN = and_(_d.run_id == bindparam("of_run"), _d.status == QUEUED)
_RETRY_DUE = and_(_d.status == RETRY, _d.next_attempt_at <= bindparam("now"))
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_ANY_IDS = any_(bindparam("ids", type_=postgresql.ARRAY(Integer)))


_CHOSEN_QUEUED, _CHOSEN_DUE = (
    select(_d.id).where(condition).order_by(_d.id).limit(bindparam("limit")).with_for_update(skip_locked=True)
    for condition in (_QUEUED_OF_RUN, _RETRY_DUE)
)
# SQLite's claim, in three statements (PostgreSQL's is one, _claim_in_one): the chosen rows are this
# transaction's (SQLite's write transaction holds the database), so the update takes them by id alone.
_CLAIM = (
    update(deliveries).where(_d.id.in_(_IDS)).values(status=SENDING, claimed_by=bindparam("worker"), updated_at=bindparam("now"))
    .returning(_d.id)
)
# A digest's number in its subscriber's series: 1 + the deliveries sent to them so far (kept, and pruned:
# subscriber_issues), read with the claim rather than once per message. The status is tested inside the
# sum, not in WHERE: then only the subscriber's own rows are read (their index), where PostgreSQL would
# otherwise AND it with a bitmap of every sent delivery, a scan that grows with the outbox.
_earlier = deliveries.alias("earlier")


def _with_subscribers(claimed: Any) -> Any:
    """The claimed deliveries (`claimed`: the deliveries table or a claim's RETURNING) with what a
    message needs of their subscribers now: their row, the slugs they follow (one lookup of
    subscriber_categories' key per row: a separate IN query over the claimed subscribers was planned
    as a scan of the whole table until it was analysed) and the digests sent to them so far."""
    c = claimed.c
    sent_before = (
        select(func.coalesce(func.sum(case((_earlier.c.status == SENT, 1), else_=0)), 0))
        .where(_earlier.c.subscriber_id == c.subscriber_id).correlate(claimed).scalar_subquery()
    )
    pruned_sent = (
        select(subscriber_issues.c.pruned_sent).where(subscriber_issues.c.subscriber_id == c.subscriber_id)
        .correlate(claimed).scalar_subquery()
    )
    followed = (
        select(func.aggregate_strings(_sc.slug, ",")).where(_sc.subscriber_id == c.subscriber_id)
        .correlate(claimed).scalar_subquery()
    )
    return (
        select(c.id, c.run_id, c.subscriber_id, c.since, c.since_key, c.until, c.articles, c.message_id, c.attempts,
               c.created_at, _s.email, _s.name, _s.status.label("subscriber_status"), _s.frequency, _s.timezone,
               _s.send_hour, _s.weekday, _s.high_water, _s.source, followed.label("categories"),
               sent_before.label("sent_before"), func.coalesce(pruned_sent, 0).label("pruned_sent"))
        .join_from(claimed, subscribers, _s.id == c.subscriber_id).order_by(c.id)
    )


def _claim_in_one(chosen: Any) -> Any:
    """PostgreSQL: the `chosen` deliveries marked `sending` and read back with their subscribers in one
    statement (a quarter less CPU in the process and in the server than choosing, marking and reading
    in three; bench/RESULTS.md, #14 session 9). The choice is MATERIALIZED: evaluated once, its rows
    locked (FOR UPDATE SKIP LOCKED) before the update takes them."""
    picked = chosen.cte("chosen").prefix_with("MATERIALIZED")
    marked = (
        update(deliveries).where(_d.id == picked.c.id)
        .values(status=SENDING, claimed_by=bindparam("worker"), updated_at=bindparam("now"))
        .returning(_d.id, _d.run_id, _d.subscriber_id, _d.since, _d.since_key, _d.until, _d.articles, _d.message_id,
                   _d.attempts, _d.created_at)
        .cte("claimed")
    )
    return _with_subscribers(marked)


_CLAIMED_ROWS = _with_subscribers(deliveries).where(_d.id.in_(_IDS))
_CLAIM_QUEUED_IN_ONE, _CLAIM_DUE_IN_ONE = _claim_in_one(_CHOSEN_QUEUED), _claim_in_one(_CHOSEN_DUE)
# What recording a result writes on its delivery (one row per parameter set).
_ONE = _d.id == bindparam("did")
_SENT_VALUES = {"status": SENT, "open_subscriber_id": None, "attempts": _d.attempts + 1, "sent_at": bindparam("now"),
                "updated_at": bindparam("now"), "next_attempt_at": None}  # besides each delivery's code and reply
_SENT = update(deliveries).where(_ONE).values(**_SENT_VALUES, last_code=bindparam("code"), last_reply=bindparam("reply"))
# On PostgreSQL, the sent results of a batch in one statement, their values as arrays: one row per
# parameter set costs a statement each, in the process and in the server (twice the CPU of this
# one for the same rows; bench/RESULTS.md, #8).
_SENT_ROWS = func.unnest(bindparam("dids", type_=postgresql.ARRAY(Integer)), bindparam("codes", type_=postgresql.ARRAY(Integer)),
                         bindparam("replies", type_=postgresql.ARRAY(Text))).table_valued("did", "code", "reply").render_derived(name="v")
_SENT_ALL = update(deliveries).where(_d.id == _SENT_ROWS.c.did).values(
    **_SENT_VALUES, last_code=_SENT_ROWS.c.code, last_reply=_SENT_ROWS.c.reply)
_RETRY = update(deliveries).where(_ONE).values(
    status=RETRY, attempts=_d.attempts + 1, last_code=bindparam("code"), last_reply=bindparam("reply"),
    next_attempt_at=bindparam("at"), updated_at=bindparam("now"))
_FINISH = update(deliveries).where(_ONE).values(
    status=bindparam("status"), open_subscriber_id=None, attempts=_d.attempts + bindparam("tried"),
    last_code=bindparam("code"), last_reply=bindparam("reply"), next_attempt_at=None, updated_at=bindparam("now"))
_BACK = update(deliveries).where(_ONE, _d.status == SENDING).values(
    status=bindparam("back"), claimed_by=None, updated_at=bindparam("now"))
# The check before sending, as an expanding IN list, and on PostgreSQL with the batch as one array
# (= ANY): its SQL text is then the same for every batch, so neither SQLAlchemy nor psycopg renders
# and parses 32 placeholders again each time (bench/RESULTS.md, #8).
_STATES, _STATES_ANY = (select(_s.id, _s.status, _s.high_water).where(ids) for ids in (_s.id.in_(_IDS), _s.id == _ANY_IDS))

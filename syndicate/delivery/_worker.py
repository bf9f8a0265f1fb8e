"""`syndicate worker`: a stateless sender that claims deliveries of any run from the shared outbox and sends them.

A worker registers in `delivery_workers` and heartbeats (syndicate.delivery._liveness), then works
in passes: it leases its share of `[smtp] connections` (syndicate.delivery._limits), claims
batches of deliveries (due retries first, then queued ones of any run, oldest first), re-renders
each from its recorded articles and sends it through DeliveryService's own loop (`_send`: the same
checks just before sending, the same recording within 0.2 s of each reply, so the exactly-once and
crash rules of one process hold). A pass ends when nothing is left or after PASS_SECONDS, when the
connection slots are given back and leased again, so workers that start later get their share.

Messages go to the backend through `_LimitedBackend`, which holds the deployment's `[smtp] rate`
and `domain_rate` (slots reserved in PostgreSQL) and times every reply for the metrics.

Stop (SIGTERM): no new claim, the messages handed to the server finish and are recorded, the
claimed ones not yet handed go back to the queue, the worker's row is deleted. kill -9: its claims
stay `sending` until another worker sees its heartbeat older than `[outbox] claim_timeout` and
releases them per `[outbox] in_flight` (resent with the same Message-ID, or failed).
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from syndicate.config import OutboxSettings
from syndicate.delivery._limits import ConnectionSlots, SharedRate, domain_rates
from syndicate.delivery._liveness import WorkerRegistry, claim_any, deployment_state, require_workers_database
from syndicate.delivery._outbox import QUEUED, ClaimedDelivery, Outbox, Result, worker_token
from syndicate.delivery._service import CLAIM_BATCH, DeliveryService, _Messages
from syndicate.digest import Digest
from syndicate.errors import UsageError
from syndicate.mail import MailBackend, OutgoingMessage, SendResult, make_backend
from syndicate.metrics import Metrics, OutboxGauges
from syndicate.storage import Database
from syndicate.subscribers import SubscriberStore

log = logging.getLogger(__name__)

PASS_SECONDS = 30.0  # a pass's claims stop after this long: connection slots are then shared out again
IDLE_POLL = 0.5  # seconds between claims while the outbox has nothing to send
SLOT_POLL = 1.0  # seconds between tries while every connection slot is held by other workers
COUNT_EVERY = 10.0  # seconds between recounts of the runs this worker sends (a recount reads the whole run)
DEFER_MAX = 1000  # messages held back for their domain's pacing, at most
RECOVER_EVERY = 0.5  # seconds between looks for lost workers (one small DELETE on delivery_workers)
RELOAD_AFTER = 5.0  # seconds between content reloads when a delivery names an article this worker does not know


class CountingOutbox(Outbox):
    """An Outbox that counts every recorded result in the metrics (deliveries by outcome)."""

    def __init__(self, database: Database, settings: OutboxSettings, metrics: Metrics, worker: str | None = None, *,
                 subscribers: SubscriberStore | None = None) -> None:
        super().__init__(database, settings, worker, subscribers=subscribers)
        self.metrics = metrics

    def record(self, results: Sequence[Result], now: datetime) -> None:
        super().record(results, now)
        for outcome, number in Counter("released" if r.outcome == QUEUED else r.outcome for r in results).items():
            self.metrics.deliveries.labels(outcome).inc(number)


class _LimitedBackend(MailBackend):
    """Wraps the configured backend: holds the shared rate and per-domain pacing, times each reply.

    A message whose domain has no free slot yet waits aside (at most `hold`: a worker holds no more
    than one claim's worth, so that it does not take from the queue what other workers, idle, could
    send within the same shared pace) while others go ahead. Every message taken from the caller gets
    one result: those still held back when the send stops come back with outcome "queued" (never
    handed to a server: back in the queue).
    """

    name = "limited"

    def __init__(self, inner: MailBackend, *, rate: SharedRate | None, domains: dict[str, SharedRate],
                 metrics: Metrics | None, hold: int = DEFER_MAX) -> None:
        super().__init__()
        self.inner = inner
        self.hold = hold
        self.rate = rate
        self.domains = domains
        self.metrics = metrics

    def send_messages(self, messages: Iterable[OutgoingMessage], *, stop: threading.Event | None = None) -> Iterator[SendResult]:
        handed: dict[str, float] = {}
        held: list[tuple[float, int, OutgoingMessage]] = []
        for result in self.inner.send_messages(self._paced(iter(messages), stop, handed, held), stop=stop):
            started = handed.pop(result.key, None)
            if self.metrics is not None:
                if started is not None:
                    self.metrics.send_seconds.observe(time.monotonic() - started)
                self.metrics.smtp_replies.labels(f"{result.code // 100}xx" if result.code else "none").inc()
            yield result
        for _, _, message in sorted(held):
            yield SendResult(message.key, message.message_id, QUEUED, None, "held back by pacing when the send stopped")  # type: ignore[arg-type]

    def _paced(self, source: Iterator[OutgoingMessage], stop: threading.Event | None, handed: dict[str, float],
               held: list[tuple[float, int, OutgoingMessage]]) -> Iterator[OutgoingMessage]:
        exhausted, order = False, 0
        while stop is None or not stop.is_set():
            now = time.monotonic()
            if held and held[0][0] <= now:
                message = heapq.heappop(held)[2]
            elif not exhausted and len(held) < self.hold:
                message = next(source, None)  # type: ignore[assignment]
                if message is None:
                    exhausted = True
                    continue
                pacer = self.domains.get(message.recipients[0].rpartition("@")[2].lower())
                if pacer is not None:
                    due = pacer.next_slot()
                    if due > time.monotonic():
                        heapq.heappush(held, (due, order, message))
                        order += 1
                        continue
            elif held:
                _pause(held[0][0] - now, stop)
                continue
            else:
                return
            if self.rate is not None and not self.rate.wait(stop):
                heapq.heappush(held, (0.0, -1, message))  # stopped while waiting for a slot: never handed
                return
            handed[message.key] = time.monotonic()
            yield message


def _pause(seconds: float, stop: threading.Event | None) -> None:
    if seconds > 0 and stop is not None:
        stop.wait(seconds)
    elif seconds > 0:
        time.sleep(seconds)


class _FreshMessages(_Messages):
    """_Messages that reload the content when a delivery names an article planned after this worker
    loaded it (at most every RELOAD_AFTER seconds): a worker lives longer than one run."""

    def __init__(self, service: DeliveryService) -> None:
        super().__init__(service, service.content.read())
        self.loaded = time.monotonic()

    def digest(self, delivery: ClaimedDelivery) -> Digest | None:
        unknown = any(i not in self.by_id for _, ids, _ in delivery.sections for i in ids)
        if unknown and time.monotonic() - self.loaded >= RELOAD_AFTER:
            self.use(self.service.content.read())
            self.loaded = time.monotonic()
            log.info("content reloaded: a delivery names an article this worker had not loaded delivery=%s", delivery.id)
        return super().digest(delivery)


class Worker:
    """One worker process's life: register, heartbeat, send in passes until `stop`, leave."""

    def __init__(
        self,
        service: DeliveryService,
        *,
        mode: str,
        concurrency: int,
        metrics: Metrics | None = None,
        environ: dict[str, str] | None = None,
        claim_batch: int | None = None,
    ) -> None:
        """`mode` is `[delivery] mode` (only "workers" sends); the sections read are the service's.
        `claim_batch` (default: 32 per connection, at most CLAIM_BATCH): small enough that the
        last deliveries of a run are shared among the workers, large enough to claim seldom."""
        database = service.database
        settings = service.settings
        require_workers_database(mode, database.url)
        if mode != "workers":
            raise UsageError('syndicate worker sends only with [delivery] mode = "workers" '
                             "(inline: the service and `syndicate send` send themselves)")
        self.settings = settings
        self.database = database
        self.concurrency = concurrency
        self.metrics = metrics or Metrics()
        self.id = worker_token()
        self.service = service
        self.outbox = CountingOutbox(database, settings.outbox, self.metrics, worker=self.id, subscribers=service.store)
        self.service.outbox = self.outbox
        self.service.backend_factory = self._backend
        self.environ = environ
        self.claim_batch = claim_batch or min(CLAIM_BATCH, 32 * concurrency)
        timeout = settings.outbox.claim_timeout
        self.registry = WorkerRegistry(self.outbox, concurrency=concurrency, claim_timeout=timeout, pid=os.getpid())
        self.smtp = settings.mail.backend == "smtp"
        self.slots = ConnectionSlots(database, self.id, total=settings.smtp.connections, ttl=timeout)
        self.rate = SharedRate(database, "rate", settings.smtp.rate) if settings.smtp.rate else None
        self.domains = domain_rates(database, dict(settings.smtp.domain_rate))
        self.fenced = False
        self.connections = concurrency
        self.tally: dict[str, int] = {}

    def _backend(self) -> MailBackend:
        if self.smtp:
            extra: dict[str, Any] = {"connections": self.connections, "rate": None}
            if self.environ is not None:
                extra["environ"] = self.environ
            inner = make_backend(self.settings.mail, self.settings.smtp, **extra)
        else:
            inner = make_backend(self.settings.mail, self.settings.smtp)
        return _LimitedBackend(inner, rate=self.rate, domains=self.domains, metrics=self.metrics, hold=self.claim_batch)

    def _clock(self) -> datetime:
        return datetime.now(UTC)

    # -- life

    def run(self, stop: threading.Event) -> dict[str, int]:
        """Send until `stop` is set (or this worker is fenced off); returns what it did by outcome."""
        self.registry.register()
        done = threading.Event()
        beats = threading.Thread(target=self._heartbeat, args=(stop, done), name="worker-heartbeat", daemon=True)
        beats.start()
        try:
            self._recover()
            messages = _FreshMessages(self.service)
            while not stop.is_set():
                if not self._lease_connections(stop):
                    break
                try:
                    sent = self._pass(stop, messages)
                finally:
                    if self.smtp:
                        self.slots.release()
                if not sent:
                    stop.wait(IDLE_POLL)
        finally:
            done.set()
            beats.join()
            if not self.fenced:
                self.registry.unregister(self._clock())
        log.info("worker stopped worker=%s fenced=%s %s", self.id, self.fenced,
                 " ".join(f"{k}={v}" for k, v in sorted(self.tally.items())))
        return self.tally

    def _heartbeat(self, stop: threading.Event, done: threading.Event) -> None:
        """Renew every claim_timeout / 3 and look for lost workers every RECOVER_EVERY (so a lost
        worker's claims go back within claim_timeout plus that); fence this worker (stop it sending)
        when it could not renew for half the timeout or was declared lost."""
        timeout = self.settings.outbox.claim_timeout
        last_beat = last_ok = time.monotonic()
        while not done.wait(min(timeout / 3, RECOVER_EVERY)):
            if time.monotonic() - last_beat >= timeout / 3:
                last_beat = time.monotonic()
                try:
                    alive = self.registry.beat()
                    last_ok = time.monotonic()
                except SQLAlchemyError as e:
                    log.warning("worker heartbeat failed worker=%s: %s", self.id, e)
                    alive = time.monotonic() - last_ok < timeout / 2
                if not alive:
                    log.error("worker fenced off worker=%s: its heartbeat lapsed, its claims are another worker's "
                              "now: stopping at once", self.id)
                    self.fenced = True
                    stop.set()
                    return
            self._recover()

    def _recover(self) -> None:
        try:
            count = self.registry.recover_lost(self._clock())
        except SQLAlchemyError as e:
            log.warning("worker could not recover lost workers' claims worker=%s: %s", self.id, e)
            return
        if count:
            self.metrics.recovered.inc(count)

    def _lease_connections(self, stop: threading.Event) -> bool:
        """Hold at least one `[smtp] connections` slot (up to --concurrency); False when stopped first."""
        if not self.smtp:
            self.connections = self.concurrency
            return True
        waited = False
        while not stop.is_set():
            held = self.slots.lease(self.concurrency)
            if held:
                self.connections = held
                return True
            if not waited:
                log.info("worker waiting for an SMTP connection slot worker=%s total=%s", self.id, self.slots.total)
                waited = True
            stop.wait(SLOT_POLL)
        return False

    def _pass(self, stop: threading.Event, messages: _Messages) -> int:
        """Claim and send until nothing is left, PASS_SECONDS are over or `stop`; how many were claimed."""
        first = self._claim()
        if not first:
            return 0
        deadline = time.monotonic() + PASS_SECONDS
        touched = {d.run_id for d in first}
        pending = [first]
        claimed = len(first)
        last_count = [time.monotonic()]

        def claim() -> list[ClaimedDelivery]:
            nonlocal claimed
            if pending:
                return pending.pop()
            if time.monotonic() > deadline:
                return []
            batch = self._claim()
            touched.update(d.run_id for d in batch)
            claimed += len(batch)
            return batch

        def counted() -> None:
            if time.monotonic() - last_count[0] >= COUNT_EVERY:
                self._count(touched)
                last_count[0] = time.monotonic()

        try:
            tally = self.service._send(claim, self._clock, stop, counted, messages)
        finally:
            self._count(touched)
        for outcome, number in tally.items():
            self.tally[outcome] = self.tally.get(outcome, 0) + number
        log.info("worker pass done worker=%s claimed=%s connections=%s runs=%s", self.id, claimed, self.connections,
                 ",".join(map(str, sorted(touched))))
        return claimed

    def _claim(self) -> list[ClaimedDelivery]:
        started = time.monotonic()
        batch = claim_any(self.outbox, self._clock(), self.claim_batch)
        self.metrics.claim_seconds.observe(time.monotonic() - started)
        return batch

    def _count(self, runs: set[int]) -> None:
        for run_id in sorted(runs):
            try:
                self.outbox.refresh(run_id, self._clock())
            except (SQLAlchemyError, LookupError) as e:  # pruned meanwhile, or the database away: counted later
                log.warning("worker could not recount run=%s: %s", run_id, e)


def observed_backends(factory: Callable[[], MailBackend], metrics: Metrics) -> Callable[[], MailBackend]:
    """`factory`'s backends with their replies counted and timed in `metrics` (no limits added)."""
    return lambda: _LimitedBackend(factory(), rate=None, domains={}, metrics=metrics)


def worker_metrics(outbox: OutboxSettings, database: Database, metrics: Metrics) -> Metrics:
    """Add the deployment-wide outbox gauges (read at each scrape) to `metrics`."""
    timeout = outbox.claim_timeout
    metrics.watch(OutboxGauges(lambda: deployment_state(database, timeout, datetime.now(UTC))))
    return metrics

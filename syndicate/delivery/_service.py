"""Delivery: plans runs into the outbox and works through them with a mail backend, exactly once.

A run first records one delivery per subscriber digest (syndicate/outbox.py says what makes
one unique), then claims them in batches, re-renders each message from its recorded
articles (same bytes, same Message-ID on a resend), hands them to the backend as a lazy
stream and records each result within ~0.2 s of the server's reply. See the outbox module
for the crash policy (`[outbox] in_flight`).

After a crash nothing recorded is lost: recover() (at start) puts the deliveries left in flight
back per that policy; `syndicate send` resumes every run with queued deliveries at once, and the
scheduler's retry job (retry_due) resumes a run nobody has touched for ABANDONED_AFTER.

A run of PARALLEL_FROM deliveries or more is worked by `[outbox] workers` processes (forked,
when this process runs no other thread and the backend is smtp or file; see _WorkerGroup): each
is a sender like the one above with its own claims (its own `claimed_by`), its share of
`[smtp] connections` and its own in-flight window, so at a crash up to `workers` x
(FLUSH_EVERY + the backend's window) messages may be unrecorded. This process is one of them
(in send_manual it first plans the rest of the run while the workers send the first batches).
A worker stops when this process asks or is gone (its pipe closes), recording its messages in
flight: after a crash of this process, only its own in-flight messages are left `sending`.
"""

from __future__ import annotations

import logging
import multiprocessing.synchronize
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from itertools import islice
from typing import Any

from syndicate.bounces import address_tokens
from syndicate.config import (
    BounceSettings,
    DigestSettings,
    DkimSettings,
    EmailSettings,
    LinkSettings,
    MailSettings,
    OutboxSettings,
    SiteSettings,
    SmtpSettings,
    read_secret,
)
from syndicate.content import (
    ArticleRef,
    Category,
    ContentSource,
    Corpus,
    Forked,
    WorkerDied,
    can_fork,
    event_on_signals,
    render_markdown,
    shared_event,
)
from syndicate.delivery._outbox import (
    FAILED,
    QUEUED,
    RETRY,
    SENT,
    SKIPPED,
    ClaimedDelivery,
    Failure,
    FailureGroup,
    Outbox,
    PlannedDelivery,
    Requeued,
    Result,
    RunReport,
    Sections,
    WaitingRetry,
    campaign_of,
    since_key,
    subscriber_states,
)
from syndicate.digest import (
    Digest,
    DigestSection,
    EmailRenderer,
    LinkMaker,
    MessageBuilder,
    Selector,
    Timeline,
    message_id,
    select_digest,
    variant_key,
)
from syndicate.errors import ConfigError, MailError, MissingSecretError, SyndicateError, UsageError
from syndicate.mail import MailBackend, OutgoingMessage, SendResult, make_backend
from syndicate.site import SiteUrls
from syndicate.storage import Database
from syndicate.subscribers import (
    Filter,
    Frequency,
    PlaceholderLinks,
    SignedLinks,
    Subscriber,
    SubscriberStatus,
    SubscriberStore,
    SuppressedSet,
    SuppressionList,
    next_send_time,
    parse_address,
    signer_from_settings,
)

log = logging.getLogger(__name__)

__all__ = ["DeliveryService", "Failure", "FailureGroup", "Requeued", "RunReport", "SendRequest", "WaitingRetry"]

PLAN_BATCH = 1000
CLAIM_BATCH = 200
CHECK_AHEAD = 32  # subscribers re-checked (still active?) just before their messages go out, this many at a time
FLUSH_EVERY = 100
FLUSH_SECONDS = 0.2
COUNT_SECONDS = 1.0
PARALLEL_FROM = 2 * CLAIM_BATCH  # queued deliveries from which a run is worked by several processes
FORKABLE_BACKENDS = ("smtp", "file")  # memory keeps messages in the process, console would interleave
ABANDONED_AFTER = timedelta(minutes=5)
_NOBODY = Subscriber(id=0, email="nobody@example.invalid", name=None, status=SubscriberStatus.ACTIVE, categories=(),
                     frequency=Frequency.DAILY, timezone="UTC", send_hour=0)  # the warm-up's recipient: nothing is sent


@dataclass(frozen=True)
class SendRequest:
    """Who a manual send is for: every active subscriber matching all the given filters."""

    frequency: Frequency | None = None
    categories: tuple[str, ...] = ()  # slugs; subscribers following any of them
    subscriber: str | None = None  # one subscriber by email
    dry_run: bool = False
    test_to: str | None = None  # mail one test copy here, change no state

    def __post_init__(self) -> None:
        if self.frequency is not None:
            object.__setattr__(self, "frequency", Frequency(self.frequency))
        object.__setattr__(self, "categories", tuple(self.categories))

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["frequency"] = self.frequency.value if self.frequency else None
        record["categories"] = list(self.categories)
        return record


class _Recorder:
    """Buffers results and writes them in short transactions (every 100 results or 0.2 s), one
    after the other in a thread of its own, so that messages go on being handed to the server
    while a batch is written; close() waits for the last. A write that fails is raised by the
    next flush() or close() (what was not written stays `sending`, for recover())."""

    def __init__(self, outbox: Outbox, clock: Callable[[], datetime]) -> None:
        self.outbox = outbox
        self.clock = clock
        self.buffer: list[Result] = []
        self.last = time.monotonic()
        self.tally: dict[str, int] = {}
        self._batches: queue.SimpleQueue[list[Result] | None] = queue.SimpleQueue()
        self._failed: BaseException | None = None  # the write that failed: no later batch is written
        self._told = False  # whether the sending thread has been given that failure
        self._writer = threading.Thread(target=self._write, name="outbox-recorder", daemon=True)
        self._writer.start()

    def add(self, delivery: ClaimedDelivery, outcome: str, code: int | None, reply: str) -> None:
        self.buffer.append(Result(delivery, outcome, code, reply))
        if outcome != QUEUED:
            self.tally[outcome] = self.tally.get(outcome, 0) + 1

    def due(self) -> bool:
        return len(self.buffer) >= FLUSH_EVERY or (bool(self.buffer) and time.monotonic() - self.last >= FLUSH_SECONDS)

    def flush(self) -> None:
        self._raise()
        if self.buffer:
            self._batches.put(self.buffer)
            self.buffer = []
        self.last = time.monotonic()

    def close(self) -> None:
        """Write what is left and wait until every batch is written."""
        try:
            self.flush()
        finally:
            self._batches.put(None)
            self._writer.join()
        self._raise()

    def _write(self) -> None:
        while (batch := self._batches.get()) is not None:
            if self._failed is None:
                try:
                    self.outbox.record(batch, self.clock())
                except BaseException as e:  # raised in the sending thread; the later batches are not written
                    self._failed = e

    def _raise(self) -> None:
        if self._failed is not None and not self._told:
            self._told = True
            raise self._failed


class _Messages:
    """Everything needed to re-render claimed deliveries: the corpus, a renderer, per-run builders."""

    def __init__(self, service: DeliveryService, corpus: Corpus) -> None:
        self.service = service
        self.settings = service.settings
        self.use(corpus)
        self.renderer = service.renderer()
        self.sender = parseaddr(self.settings.mail.from_)[1]
        self.tokens = service.tokens
        self._campaigns: dict[int, tuple[str, str, str, str]] = {}  # id -> (subject, body HTML, body text, variant)

    def use(self, corpus: Corpus) -> None:
        """Render from `corpus` from now on (at the start, and when a worker reloads the content)."""
        self.categories = corpus.categories
        self.by_slug = {c.slug: c for c in corpus.categories}
        self.corpus = corpus
        self.by_id: dict[str, ArticleRef] = {r.id: r for r in corpus.refs}  # each Article made when a digest shows it
        self._builders: dict[int, MessageBuilder] = {}  # made again from this corpus

    def builder(self, run_id: int) -> MessageBuilder:
        """One per run, dated (and its links signed) at the run's start: a resend is the same bytes."""
        if run_id not in self._builders:
            started = self.service.outbox.run_started(run_id)
            links = SignedLinks(signer_from_settings(self.settings.links, self.service.environ), self.service.urls, now=started)
            mailto = self.tokens.unsubscribe_address if self.tokens is not None and self.tokens.unsubscribe else None
            self._builders[run_id] = self.service.builder(self.renderer, links, self.categories, started, mailto_for=mailto)
        return self._builders[run_id]

    def digest(self, delivery: ClaimedDelivery) -> Digest | None:
        """The recorded digest again, numbered in the subscriber's series; None when every one of its
        articles is gone from the content."""
        return self._digest(delivery.subscriber, delivery.sections, delivery.since, delivery.until, delivery.issue)

    def _digest(self, subscriber: Subscriber, recorded: Sections, since: datetime, until: datetime,
                issue: int | None = None) -> Digest | None:
        sections = []
        for slug, ids, hidden in recorded:
            articles = self.corpus.articles_of(self.by_id[i] for i in ids if i in self.by_id)
            if articles or hidden:
                sections.append(DigestSection(self.by_slug.get(slug) or Category(slug, slug), articles, hidden))
        if not any(s.articles for s in sections):
            return None
        return Digest(subscriber, tuple(sections), since, until, variant_key(sections), issue=issue)

    def warm(self, run_id: int, planned: Iterable[PlannedDelivery]) -> None:
        """Build (for nobody) one message of each variant among `planned`: what is rendered, inlined
        and encoded here before a fork, the workers inherit instead of doing it again each."""
        seen: set[Sections] = set()
        for p in planned:
            if p.sections not in seen:
                seen.add(p.sections)
                digest = self._digest(_NOBODY, p.sections, p.since, p.until)
                if digest is not None:
                    self.builder(run_id).digest_message(digest, planned_id=p.message_id)

    def campaign(self, delivery: ClaimedDelivery, campaign_id: int) -> OutgoingMessage:
        """A campaign's message for the delivery's subscriber (its text read and rendered once per process)."""
        if campaign_id not in self._campaigns:
            subject, body, variant = self.service.outbox.campaign_text(campaign_id)
            self._campaigns[campaign_id] = (subject, render_markdown(body), body.strip(), variant)
        subject, body_html, body_text, variant = self._campaigns[campaign_id]
        builder = self.builder(delivery.run_id)
        rendered = self.renderer.render_campaign(f"campaign:{campaign_id}", subject, body_html, body_text,
                                                 delivery.subscriber, builder.links, variant=variant)
        data = builder.campaign_message(delivery.subscriber, rendered, delivery.message_id)
        return OutgoingMessage(str(delivery.id), self.sender, (delivery.subscriber.email,), data, delivery.message_id)

    def message(self, delivery: ClaimedDelivery, digest: Digest) -> OutgoingMessage:
        built = self.builder(delivery.run_id).digest_message(digest, planned_id=delivery.message_id)
        verp = self.tokens.envelope_sender("d", delivery.id) if self.tokens is not None else None
        return OutgoingMessage(str(delivery.id), verp or self.sender, (built.recipient,), built.data, built.message_id)


class _WorkerGroup:
    """Forked processes sending one run beside this one, one per share of `[smtp] connections`.

    Forked with the corpus loaded (in `messages`, with what it has rendered so far), which they
    share with this process. No database connection crosses the fork (the pool is emptied
    first). With `planning`, a worker that finds nothing queued waits for more until the event
    is set. A worker stops when nothing is left, when its pipe closes (finish() stopping, or
    this process gone) or on SIGTERM.
    """

    def __init__(
        self,
        service: DeliveryService,
        shares: Sequence[int],
        claim: Callable[[], list[ClaimedDelivery]],
        clock: Callable[[], datetime],
        messages: _Messages,
        planning: multiprocessing.synchronize.Event | None = None,
    ) -> None:
        self.planning = planning
        service.database.close()
        watched, self._stopping = os.pipe()  # EOF on `watched` tells every worker to stop
        self._workers: list[Forked] = []
        try:
            for share in shares:
                self._workers.append(Forked(
                    _work_in_worker, service, claim, clock, share, messages, planning, watched, self._stopping,
                    name="delivery-worker",
                ))
        except BaseException:
            self.stop_and_wait()
            raise
        finally:
            os.close(watched)
        log.info("sending in worker processes pids=%s connections=%s", [w.pid for w in self._workers], list(shares))

    def finish(self, stop: threading.Event | None, counted: Callable[[], None]) -> None:
        """Wait for every worker (counting every COUNT_SECONDS); `stop` set: they stop after their
        messages in flight. Raises what a worker could not get past (a MailError: login, TLS)."""
        try:
            while any(worker.is_alive() for worker in self._workers):
                if stop is not None and stop.is_set():
                    break
                self._workers[0].join(COUNT_SECONDS)
                counted()
        finally:
            self.stop_and_wait()
        for worker in self._workers:
            try:
                error = worker.result()
            except WorkerDied as e:
                raise SyndicateError(f"delivery {e}: see the log") from None
            if error is not None:
                raise MailError(f"delivery worker {worker.pid}: {error}")

    def stop_and_wait(self) -> None:
        """Close the workers' pipe (they stop after their messages in flight) and wait for them."""
        if self._stopping >= 0:
            os.close(self._stopping)
            self._stopping = -1
        for worker in self._workers:
            worker.join()


def _work_in_worker(
    service: DeliveryService,
    claim: Callable[[], list[ClaimedDelivery]],
    clock: Callable[[], datetime],
    connections: int,
    messages: _Messages,
    planning: multiprocessing.synchronize.Event | None,
    watched: int,
    stopping: int,
) -> str | None:
    """A forked worker's life: claims of its own (its own `claimed_by`, told apart by recover());
    returns what stopped it early (None: nothing did)."""
    os.close(stopping)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which closes the pipe
    with event_on_signals(threading.Event(), signal.SIGTERM) as stop:
        return _work_until(stop, service, claim, clock, connections, messages, planning, watched)


def _work_until(
    stop: threading.Event,
    service: DeliveryService,
    claim: Callable[[], list[ClaimedDelivery]],
    clock: Callable[[], datetime],
    connections: int,
    messages: _Messages,
    planning: multiprocessing.synchronize.Event | None,
    watched: int,
) -> str | None:
    threading.Thread(target=_set_at_eof, args=(watched, stop), name="parent-watch", daemon=True).start()
    service.outbox = Outbox(service.database, service.settings.outbox, subscribers=service.store)
    service.connections_share = connections

    def claim_while_planning() -> list[ClaimedDelivery]:
        while True:
            planned = planning is None or planning.is_set()  # read first: then every batch planned is visible
            batch = claim()
            if batch or planned or stop.is_set():
                return batch
            assert planning is not None
            planning.wait(0.05)

    try:
        service._send(claim_while_planning, clock, stop, None, messages)
    except SyndicateError as e:
        log.error("delivery worker stopped pid=%s: %s", os.getpid(), e)
        return str(e)
    finally:
        service.database.close()
    return None


@dataclass(frozen=True)
class DeliveryConfig:
    """What the delivery stage reads from the configuration: its sections, and the feeds folder its
    links need (the composition root, syndicate.wiring.delivery_config, makes it from the whole settings)."""

    site: SiteSettings
    feeds_folder: str
    email: EmailSettings
    digest: DigestSettings
    mail: MailSettings
    smtp: SmtpSettings
    dkim: DkimSettings
    links: LinkSettings
    bounces: BounceSettings
    outbox: OutboxSettings


class DeliveryService:
    """Plans runs and sends them. `backend_factory()` makes a fresh MailBackend per sending pass
    (default: the configured one); `environ` stands in for os.environ (secrets)."""

    def __init__(
        self,
        settings: DeliveryConfig,
        database: Database,
        content: ContentSource,
        *,
        backend_factory: Callable[[], MailBackend] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """`[outbox] workers` processes work a large run when `backend_factory` is None (the
        configured backend, smtp or file); a given factory always sends from this process."""
        self.settings = settings
        self.database = database
        self.content = content
        self.environ = environ
        self.store = SubscriberStore(database)
        self.urls = SiteUrls(settings.site.base_url, settings.feeds_folder)
        self.outbox = Outbox(database, settings.outbox, subscribers=self.store)
        self.backend_factory = backend_factory or self._configured_backend
        self.forkable = backend_factory is None and settings.mail.backend in FORKABLE_BACKENDS
        self.workers = settings.outbox.workers or os.cpu_count() or 1
        self.claim_batch = CLAIM_BATCH
        self.connections_share: int | None = None  # a worker process's share of [smtp] connections
        self.tokens = address_tokens(settings.bounces, settings.links, environ)  # VERP and mailto unsubscribe (#13)
        self.suppressions = SuppressionList(database)
        self._suppressed = SuppressedSet(frozenset(), frozenset())  # read again as each run is planned (#13)

    def check_ready(self) -> None:
        """Raise what would fail every delivery alike, before a run is recorded or a delivery claimed:
        a missing or short link secret, email templates that do not load, the SMTP password of a
        configured login. Such a fault is the operator's: no subscriber's digest pays for it."""
        signer_from_settings(self.settings.links, self.environ)
        self.renderer().check_templates()
        smtp = self.settings.smtp
        if self.backend_factory == self._configured_backend and self.settings.mail.backend == "smtp" and smtp.username:
            read_secret(smtp.password_env, f"[smtp] password for {smtp.username}", self.environ)

    def renderer(self) -> EmailRenderer:
        settings = self.settings
        return EmailRenderer(settings.site, settings.email, settings.digest.subject, self.urls, images=settings.digest.images)

    def builder(self, renderer: EmailRenderer, links: LinkMaker, categories: Sequence[Category],
                now: datetime, *, mailto_for: Callable[[int], str | None] | None = None) -> MessageBuilder:
        settings = self.settings
        return MessageBuilder(settings.mail, settings.email, settings.site, renderer, links, categories, now,
                              mailto_for=mailto_for)

    def _configured_backend(self) -> MailBackend:
        extra: dict[str, Any] = {}
        if self.settings.mail.backend == "smtp":
            extra = {"environ": self.environ} if self.environ is not None else {}
            if self.connections_share is not None:
                extra["connections"] = self.connections_share
        return make_backend(self.settings.mail, self.settings.smtp, dkim=self.settings.dkim, **extra)

    # -- planning

    def plan_manual(self, request: SendRequest, now: datetime) -> RunReport:
        """Record a manual run and one delivery per matching subscriber with something new."""
        self.check_ready()
        corpus = self.content.read()
        subscribers = self._matching(request, corpus)
        self._suppressed = self.suppressions.snapshot()
        run_id = self.outbox.start_run("manual", request.as_record(), now)
        for _ in self._plan_batches(run_id, subscribers, corpus, now):
            pass
        return self._planned(run_id, "manual", now)

    def _plan_batches(
        self, run_id: int, subscribers: Iterable[Subscriber], corpus: Corpus, now: datetime
    ) -> Generator[list[PlannedDelivery], None, None]:
        """Select and record the digests PLAN_BATCH subscribers at a time; yields each batch recorded."""
        selector = Selector(Timeline.of_corpus(corpus), corpus.categories, now, self.settings.digest.max_articles)
        for batch in _batched(subscribers, PLAN_BATCH):
            planned = [p for p in (self._plan_one(s, selector) for s in batch) if p is not None]
            self.outbox.add_deliveries(run_id, planned, now)
            yield planned

    def _planned(self, run_id: int, kind: str, now: datetime) -> RunReport:
        report = self.outbox.refresh(run_id, now)
        log.info("run planned run=%s kind=%s deliveries=%s", run_id, kind, report.total)
        return report

    def plan_scheduled(self, now: datetime, *, grace: timedelta) -> RunReport:
        """Record a scheduled run for every due subscriber (next send time <= now) and move their
        next send time on. One due for longer than `grace` is skipped, logged and rescheduled.
        Nothing due: no run is recorded (run_id 0)."""
        self.check_ready()
        self._reschedule_missed(now, grace)
        corpus = self.content.read()
        self._suppressed = self.suppressions.snapshot()
        run_id = 0
        selector: Selector | None = None  # made once somebody is due
        for batch in _batched(self.store.iter_due(now, batch=PLAN_BATCH), PLAN_BATCH):
            if selector is None:
                selector = Selector(Timeline.of_corpus(corpus), corpus.categories, now, self.settings.digest.max_articles)
                run_id = self.outbox.start_run("scheduled", {"due_at": now.isoformat()}, now)
            planned = [p for p in (self._plan_one(s, selector) for s in batch) if p is not None]
            moves = [(s.id, next_send_time(s.timezone, s.send_hour, s.frequency, s.weekday, now)) for s in batch]
            self.outbox.add_deliveries(run_id, planned, now, reschedule=moves)
        if not run_id:
            return RunReport.empty("scheduled", now)
        return self._planned(run_id, "scheduled", now)

    def _reschedule_missed(self, now: datetime, grace: timedelta) -> None:
        missed = self.store.missed(now - grace)
        moves = [(s.id, next_send_time(s.timezone, s.send_hour, s.frequency, s.weekday, now)) for s in missed]
        for s in missed:
            log.warning("digest missed by more than the grace time subscriber=%s email=%s: rescheduled", s.id, s.email)
        self.store.reschedule(moves)

    def _matching(self, request: SendRequest, corpus: Corpus) -> Iterable[Subscriber]:
        known = {c.slug for c in corpus.categories}
        unknown = [slug for slug in request.categories if slug not in known]
        if unknown:
            raise UsageError(f"--category: unknown category {', '.join(unknown)}", hint=f"known categories: {', '.join(sorted(known))}")
        if request.subscriber is not None:
            subscriber = self.store.get_by_email(request.subscriber)
            if subscriber.status is not SubscriberStatus.ACTIVE:
                raise UsageError(f"{subscriber.email} is {subscriber.status.value}: only active subscribers get digests")
            return [subscriber] if _wanted(subscriber, request) else []
        stored = self.store.iter_plain(Filter(status=SubscriberStatus.ACTIVE, frequency=request.frequency))
        return (s for s in stored if _wanted(s, request))

    def _plan_one(self, subscriber: Subscriber, selector: Selector) -> PlannedDelivery | None:
        if subscriber.email in self._suppressed:
            log.info("subscriber suppressed, no digest planned subscriber=%s", subscriber.id)
            return None
        digest = selector.select(subscriber)
        if digest is None:
            return None
        return PlannedDelivery(
            subscriber_id=subscriber.id,
            since=digest.since,
            since_key=since_key(subscriber.high_water),
            until=digest.until,
            sections=tuple((s.category.slug, tuple(a.id for a in s.articles), s.hidden) for s in digest.sections),
            message_id=message_id(digest, self.settings.mail.domain),
        )

    # -- sending

    def send_manual(
        self,
        request: SendRequest,
        now: datetime,
        *,
        clock: Callable[[], datetime] | None = None,
        stop: threading.Event | None = None,
        progress: Callable[[RunReport], None] | None = None,
        planned: Callable[[RunReport], None] | None = None,
    ) -> RunReport:
        """plan_manual then work, in one: when the run is worked by several processes, they start
        on the first planned batches while this process plans the rest. `clock` (default: the real
        one) dates the sending, `now` the planning; `planned` hears of the run once it is planned."""
        fixed, clock = clock, clock or _clock(None)
        self.check_ready()
        corpus = self.content.read()
        subscribers = self._matching(request, corpus)
        self._suppressed = self.suppressions.snapshot()
        run_id = self.outbox.start_run("manual", request.as_record(), now)
        batches = self._plan_batches(run_id, subscribers, corpus, now)
        shares: list[int] = []
        first: list[PlannedDelivery] = []
        group = None
        messages = _Messages(self, corpus)
        try:
            for planned_now in batches:  # alone until there is enough to share (a small run stays here)
                first += planned_now
                if len(first) >= PARALLEL_FROM:
                    shares = self._shares(run_id, now)
                    break
            if len(shares) > 1:
                messages.warm(run_id, first)
                planning = shared_event()
                group = _WorkerGroup(self, shares[1:], self._run_claim(run_id, clock), clock, messages, planning)
            for _ in batches:
                if stop is not None and stop.is_set():
                    break
        except BaseException:
            if group is not None:
                group.stop_and_wait()
            raise
        finally:
            batches.close()
            if group is not None and group.planning is not None:
                group.planning.set()
        report = self._planned(run_id, "manual", now)
        if planned is not None:
            planned(report)
        if group is None:
            return self.work(run_id, now=fixed() if fixed else None, stop=stop, progress=progress)
        claim = self._run_claim(run_id, clock)

        def send(counted: Callable[[], None]) -> None:
            self._send_beside(group, shares[0], claim, clock, stop, counted, messages)

        return self._worked(run_id, clock, progress, send)

    def work(
        self,
        run_id: int,
        *,
        now: datetime | None = None,
        stop: threading.Event | None = None,
        progress: Callable[[RunReport], None] | None = None,
    ) -> RunReport:
        """Send the run's queued deliveries until none is left (or `stop` is set); returns the run's
        counts. `now` fixes the clock (tests); None uses the real one. Retries wait for retry_due()."""
        if run_id == 0:
            return RunReport.empty("manual", now or datetime.now(UTC))
        clock = _clock(now)
        self.outbox.report(run_id)  # a LookupError for an unknown run, before any work
        self.check_ready()
        claim = self._run_claim(run_id, clock)

        def send(counted: Callable[[], None]) -> None:
            shares = self._shares(run_id, clock())
            if len(shares) > 1:
                messages = _Messages(self, self.content.read())
                group = _WorkerGroup(self, shares[1:], claim, clock, messages)
                self._send_beside(group, shares[0], claim, clock, stop, counted, messages)
            else:
                self._send(claim, clock, stop, counted)

        return self._worked(run_id, clock, progress, send)

    def _run_claim(self, run_id: int, clock: Callable[[], datetime]) -> Callable[[], list[ClaimedDelivery]]:
        def claim() -> list[ClaimedDelivery]:
            return self.outbox.claim(clock(), self.claim_batch, run_id=run_id)  # self.outbox: a worker's own
        return claim

    def _worked(
        self,
        run_id: int,
        clock: Callable[[], datetime],
        progress: Callable[[RunReport], None] | None,
        send: Callable[[Callable[[], None]], None],
    ) -> RunReport:
        """`send(counted)`, then the run's counts recorded, logged and given to `progress`."""
        def counted() -> None:
            if progress is not None:
                progress(self.outbox.refresh(run_id, clock()))

        try:
            send(counted)
        finally:
            report = self.outbox.refresh(run_id, clock())
        log.info("run worked run=%s status=%s sent=%s retrying=%s failed=%s skipped=%s",
                 run_id, report.status, report.sent, report.retrying, report.failed, report.skipped)
        if progress is not None:
            progress(report)
        return report

    def retry_due(self, now: datetime, *, stop: threading.Event | None = None) -> RunReport:
        """Send the deliveries waiting for a retry whose time has come (from any run). Recorded as a
        finished run of kind "retry" with what this pass did; nothing due: run_id 0, nothing recorded.

        Also resumes runs left with queued deliveries that nobody has touched for ABANDONED_AFTER
        (the process sending them died or stopped): the scheduler's retry job finishes them."""
        clock = _clock(now)
        touched: set[int] = set()
        self.check_ready()

        def claim() -> list[ClaimedDelivery]:
            claimed = self.outbox.claim(now, self.claim_batch)
            touched.update(d.run_id for d in claimed)
            return claimed

        try:
            tally = self._send(claim, clock, stop, None)
        finally:
            for run_id in sorted(touched):
                self.outbox.refresh(run_id, clock())
        for run_id in self.outbox.abandoned_runs(now - ABANDONED_AFTER):
            if stop is None or not stop.is_set():
                log.warning("resuming a run nobody was working on run=%s", run_id)
                self.work(run_id, now=now, stop=stop)
        if not touched:
            return RunReport.empty("retry", now)
        counts = {"sent": tally.get(SENT, 0), "retrying": tally.get(RETRY, 0), "failed": tally.get(FAILED, 0),
                  "skipped": tally.get(SKIPPED, 0)}
        return self.outbox.finish_tally("retry", now, {**counts, "total": sum(counts.values())})

    def recover(self, now: datetime) -> int:
        """After a crash: deliveries left `sending` by a dead process, per `[outbox] in_flight`."""
        return self.outbox.recover(now)

    def resume(
        self, *, now: datetime | None = None, stop: threading.Event | None = None,
        progress: Callable[[RunReport], None] | None = None,
    ) -> list[RunReport]:
        """Work every run that still has queued deliveries (an interrupted send; call recover() first),
        and recount the other unfinished ones (a run planned with no deliveries before a crash ends)."""
        reports = []
        for run_id in self.outbox.runs_with_queued():
            if stop is not None and stop.is_set():
                break
            reports.append(self.work(run_id, now=now, stop=stop, progress=progress))
        for run_id in self.outbox.open_runs():
            self.outbox.refresh(run_id, _clock(now)())
        return reports

    def _shares(self, run_id: int, now: datetime) -> list[int]:
        """The `[smtp] connections` of each process that works this run, this one first: one process
        unless the run is large enough, the backend can be forked and so can this process (forking
        one with threads is unsafe: build.py refuses it too)."""
        connections = self.settings.smtp.connections
        if self.workers < 2 or not self.forkable:
            return [connections]
        queued = self.outbox.refresh(run_id, now).queued
        if queued < PARALLEL_FROM:
            return [connections]
        if not can_fork():
            log.info("run worked in one process run=%s: this process runs threads (or cannot fork)", run_id)
            return [connections]
        count = min(self.workers, queued // CLAIM_BATCH)
        if self.settings.mail.backend == "smtp":
            count = min(count, connections)
        return [connections // count + (1 if i < connections % count else 0) for i in range(count)]

    def _send_beside(
        self,
        group: _WorkerGroup,
        connections: int,
        claim: Callable[[], list[ClaimedDelivery]],
        clock: Callable[[], datetime],
        stop: threading.Event | None,
        counted: Callable[[], None],
        messages: _Messages,
    ) -> None:
        """This process sends too, with its share of the connections, then waits for the workers."""
        self.connections_share = connections
        try:
            self._send(claim, clock, stop, counted, messages)
        except BaseException:
            group.stop_and_wait()
            raise
        finally:
            self.connections_share = None
        group.finish(stop, counted)

    def _send(
        self,
        claim: Callable[[], list[ClaimedDelivery]],
        clock: Callable[[], datetime],
        stop: threading.Event | None,
        counted: Callable[[], None] | None,
        messages: _Messages | None = None,
    ) -> dict[str, int]:
        """Claim, render and send until claim() gives nothing; every claimed delivery ends recorded
        (or, when the process dies, `sending` for recover())."""
        messages = messages or _Messages(self, self.content.read())
        recorder = _Recorder(self.outbox, clock)
        waiting: dict[str, ClaimedDelivery] = {}  # claimed, not yet handed to the backend
        handed: dict[str, ClaimedDelivery] = {}  # handed to the backend, no result yet
        last_count = time.monotonic()

        def stream() -> Iterator[OutgoingMessage]:
            while stop is None or not stop.is_set():
                batch = claim()
                if not batch:
                    return
                waiting.update((str(d.id), d) for d in batch)
                for ahead in _batched(batch, CHECK_AHEAD):
                    states = subscriber_states(self.database, [d.subscriber.id for d in ahead])
                    for delivery in ahead:
                        message = self._prepare(delivery, states.get(delivery.subscriber.id), messages, recorder)
                        del waiting[str(delivery.id)]
                        if message is not None:
                            handed[message.key] = delivery
                            yield message

        backend = self.backend_factory()
        try:
            for result in backend.send_messages(stream(), stop=stop):
                recorder.add(handed.pop(result.key), result.outcome, result.code, result.reply)
                if recorder.due():
                    recorder.flush()
                    if counted is not None and time.monotonic() - last_count >= COUNT_SECONDS:
                        counted()
                        last_count = time.monotonic()
        except MailError:
            # The backend cannot work at all (login, TLS): it attempted none of the unanswered ones.
            for delivery in handed.values():
                recorder.add(delivery, QUEUED, None, "")
            handed.clear()
            raise
        finally:
            for delivery in waiting.values():
                recorder.add(delivery, QUEUED, None, "")
            recorder.close()
        return recorder.tally

    def _prepare(
        self, delivery: ClaimedDelivery, state: tuple[str, str] | None, messages: _Messages, recorder: _Recorder
    ) -> OutgoingMessage | None:
        """The message for a claimed delivery, or None when it is skipped or cannot be built (recorded)."""
        if state is None or state[0] != SubscriberStatus.ACTIVE.value:
            recorder.add(delivery, SKIPPED, None, f"subscriber is {state[0] if state else 'deleted'}")
            return None
        campaign_id = campaign_of(delivery.since_key)
        if campaign_id is not None:
            try:
                return messages.campaign(delivery, campaign_id)
            except (SyndicateError, LookupError) as e:
                recorder.add(delivery, FAILED, None, f"cannot build the message: {e}")
                return None
        if state[1] != delivery.since_key:
            recorder.add(delivery, SKIPPED, None, "superseded: another digest moved the high-water mark")
            return None
        digest = messages.digest(delivery)
        if digest is None:
            recorder.add(delivery, SKIPPED, None, "every article of this digest is gone from the content")
            return None
        try:
            return messages.message(delivery, digest)
        except (MissingSecretError, ConfigError):  # the operator's fault: the delivery stays queued (see _send)
            raise
        except SyndicateError as e:  # a value that would break the message: sending it later will not help
            recorder.add(delivery, FAILED, None, f"cannot build the message: {e}")
            return None

    # -- without state

    def dry_run(self, request: SendRequest, now: datetime) -> list[tuple[str, int]]:
        """(email, article count) of every digest a manual send would record now; changes nothing."""
        return [(email, count) for email, count, held in self.due(request, now) if held is None]

    def due(self, request: SendRequest, now: datetime) -> Iterator[tuple[str, int, str | None]]:
        """Who a manual send is for, one subscriber with something new at a time: (email, article
        count, None) when a send would record their digest now, or (email, count, why not) when the
        outbox already holds it (the same digest sent or failed, or one under way). The planning a
        send does and the outbox's own rule, asked without writing: the dry run and the send agree."""
        corpus = self.content.read()
        selector = Selector(Timeline.of_corpus(corpus), corpus.categories, now, self.settings.digest.max_articles)
        for batch in _batched(self._matching(request, corpus), PLAN_BATCH):
            planned = [(s, p) for s, p in ((s, self._plan_one(s, selector)) for s in batch) if p is not None]
            held = self.outbox.held_back([p for _, p in planned])
            for subscriber, p in planned:
                count = sum(len(ids) for _, ids, _ in p.sections)
                in_the_way = held.get(subscriber.id)
                yield subscriber.email, count, None if in_the_way is None else _held_reason(*in_the_way)

    def requeue(self, now: datetime, *, delivery_ids: Sequence[int] = (), run_id: int | None = None,
                reply: str | None = None) -> Requeued:
        """Failed deliveries back to the queue (see Outbox.requeue); work them with work(run_id)."""
        if not delivery_ids and run_id is None and reply is None:
            raise UsageError("requeue what? give delivery ids, a run or a server reply")
        return self.outbox.requeue(now, delivery_ids=delivery_ids, run_id=run_id, reply=reply)

    def failure_groups(self, limit: int = 50) -> list[FailureGroup]:
        return self.outbox.failure_groups(limit)

    def send_test_copy(self, request: SendRequest, to: str, now: datetime) -> SendResult:
        """Mail the digest of `request.subscriber` (or of a made-up subscriber following
        `request.categories`) to `to` only, with placeholder links; changes no state."""
        address = parse_address(to, field="test copy address")  # InvalidAddressError (a UsageError) says why not
        corpus = self.content.read()
        subscriber = self._test_subscriber(request, corpus, address.text)
        digest = select_digest(subscriber, corpus.articles, corpus.categories, now, self.settings.digest.max_articles)
        if digest is None:
            raise UsageError(f"nothing new for {request.subscriber or ', '.join(request.categories)}: no digest to send")
        links = PlaceholderLinks(self.urls)
        built = self.builder(self.renderer(), links, corpus.categories, now).digest_message(digest)
        message = OutgoingMessage("test", parseaddr(self.settings.mail.from_)[1], (built.recipient,), built.data, built.message_id)
        result = next(iter(self.backend_factory().send_messages([message])))
        log.info("test copy to=%s outcome=%s reply=%s", to, result.outcome, result.reply)
        return result

    def _test_subscriber(self, request: SendRequest, corpus: Corpus, to: str) -> Subscriber:
        if request.subscriber is not None:
            real = self.store.get_by_email(request.subscriber)
            return replace(real, id=0, email=to, status=SubscriberStatus.ACTIVE)
        if not request.categories:
            raise UsageError("--to needs --subscriber EMAIL or --category SLUG to know whose digest to send")
        self._matching(replace(request, subscriber=None, frequency=None), corpus)  # checks the slugs
        defaults = self.store.defaults
        return Subscriber(
            id=0, email=to, name=None, status=SubscriberStatus.ACTIVE, categories=tuple(sorted(set(request.categories))),
            frequency=request.frequency or defaults.frequency, timezone=defaults.timezone, send_hour=defaults.send_hour,
        )

    # -- status

    def report(self, run_id: int) -> RunReport:
        return self.outbox.report(run_id)

    def recent_runs(self, limit: int = 20) -> list[RunReport]:
        return self.outbox.recent_runs(limit)

    def waiting_retries(self, limit: int = 100) -> list[WaitingRetry]:
        return self.outbox.waiting_retries(limit)

    def failures(self, limit: int = 50) -> list[Failure]:
        return self.outbox.failures(limit)

    def prune(self, older_than: datetime) -> int:
        return self.outbox.prune(older_than)


def _held_reason(delivery_id: int, status: str) -> str:
    if status in (QUEUED, "sending", RETRY):
        return f"a digest is under way (delivery {delivery_id}, {status})"
    if status == FAILED:
        return f"this digest failed (delivery {delivery_id}): requeue it with `syndicate deliveries requeue --id {delivery_id}`"
    return f"this digest is already recorded (delivery {delivery_id}, {status})"


def _wanted(subscriber: Subscriber, request: SendRequest) -> bool:
    if request.frequency is not None and subscriber.frequency is not Frequency(request.frequency):
        return False
    # A subscriber who chose no category follows every one.
    return not request.categories or not subscriber.categories or bool(set(request.categories) & set(subscriber.categories))


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    source = iter(items)
    while batch := list(islice(source, size)):
        yield batch


def _set_at_eof(fd: int, event: threading.Event) -> None:
    """Block until the other end of the pipe is closed (or written to), then set `event`."""
    try:
        os.read(fd, 1)
    finally:
        event.set()


def _clock(now: datetime | None) -> Callable[[], datetime]:
    if now is not None:
        if now.tzinfo is None:
            raise ValueError("`now` must be timezone-aware")
        return lambda: now
    return lambda: datetime.now(UTC)

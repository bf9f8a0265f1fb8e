"""The scheduler: APScheduler jobs, persisted in the project's database, that rebuild feeds and send digests.

This is the one module that imports APScheduler. Jobs are stored with explicit ids (a restart
replaces them, never copies them), coalesced, one instance at a time, with a misfire grace.
APScheduler pickles a textual reference to the job function and its arguments into the job
store, so every stored job calls `run_job(scheduler_key, job_name)`: a module-level function
with plain arguments, which finds the running `Scheduler` of this process by its key.

Logging: APScheduler's own INFO lines ("Added job", "Running job", "executed successfully", twice a
minute) are dropped, and its missed-run and still-running warnings are replaced by one line of ours
naming the job; its other warnings and errors (a job store it cannot read) pass through. Every job
that recorded a run logs `job=<id> run=<run id>` once it is done.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED

from syndicate.config import Settings
from syndicate.storage import Database
from syndicate.wiring import utc_now

log = logging.getLogger(__name__)

JOBS_TABLE = "apscheduler_jobs"
REBUILD, DIGESTS, RETRIES, PRUNE = "rebuild-feeds", "digests", "retries", "prune-runs"
MAX_DIGEST_INTERVAL = 3600  # the digest job runs at least hourly, whatever the config says
FIRST_RUN_DELAY = timedelta(seconds=2)  # a new job's first run: soon after start, not in the middle of it

Clock = Callable[[], datetime]
Task = Callable[[datetime, threading.Event], object]


# ---------------------------------------------------------------- what the jobs do

class Delivery(Protocol):
    """What the jobs need of syndicate.delivery._service.DeliveryService."""

    def plan_scheduled(self, now: datetime, *, grace: timedelta) -> Any: ...
    def work(self, run_id: int, *, now: datetime | None = None, stop: threading.Event | None = None) -> Any: ...
    def retry_due(self, now: datetime, *, stop: threading.Event | None = None) -> Any: ...
    def prune(self, older_than: datetime) -> int: ...


def send_due_digests(delivery: Delivery, now: datetime, stop: threading.Event, *, grace: timedelta) -> Any:
    """Plan a run for every subscriber whose send time has come (a late one within `grace`, once;
    one later still is skipped and rescheduled by the planner), then work through it."""
    planned = delivery.plan_scheduled(now, grace=grace)
    if not planned.total:
        return planned
    return delivery.work(planned.run_id, now=now, stop=stop)


def retry_deliveries(delivery: Delivery, now: datetime, stop: threading.Event) -> Any:
    return delivery.retry_due(now, stop=stop)


def prune_runs(delivery: Delivery, now: datetime, *, keep_days: int) -> int:
    removed = delivery.prune(now - timedelta(days=keep_days))
    if removed:
        log.info("runs pruned count=%d older_than_days=%d", removed, keep_days)
    return removed


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: its stored id, its interval in seconds, and what it does."""

    id: str
    seconds: int
    task: Task


def delivery_jobs(settings: Settings, delivery: Delivery, rebuild: Callable[[], Any]) -> tuple[JobSpec, ...]:
    """The service's four jobs, with intervals from `[schedule]`."""
    schedule = settings.schedule
    grace = timedelta(seconds=schedule.misfire_grace)
    return (
        JobSpec(REBUILD, schedule.rebuild_interval, lambda now, stop: rebuild()),
        JobSpec(DIGESTS, min(schedule.digest_interval, MAX_DIGEST_INTERVAL),
                lambda now, stop: send_due_digests(delivery, now, stop, grace=grace)),
        JobSpec(RETRIES, schedule.retry_interval, lambda now, stop: retry_deliveries(delivery, now, stop)),
        JobSpec(PRUNE, 24 * 3600, lambda now, stop: prune_runs(delivery, now, keep_days=schedule.prune_after_days)),
    )


# ---------------------------------------------------------------- the scheduler

# Running schedulers of this process by key: the bridge from a stored (pickled) job reference
# back to live collaborators, which cannot be pickled. Entries live from start() to shutdown().
_RUNNING: dict[str, Scheduler] = {}
_RUNNING_LOCK = threading.Lock()


def run_job(scheduler_key: str, job_id: str) -> None:
    """What every stored job calls: run `job_id` in the scheduler registered under `scheduler_key`."""
    with _RUNNING_LOCK:
        scheduler = _RUNNING.get(scheduler_key)
    if scheduler is None:
        log.warning("job skipped: its scheduler no longer runs here job=%s scheduler=%s", job_id, scheduler_key)
        return
    scheduler.run(job_id)


APSCHEDULER_LOGGERS = ("apscheduler.scheduler", "apscheduler.executors.default")
# APScheduler's messages that Scheduler._on_event says again, with the job id, in our words.
REPLACED_MESSAGES = ('Run time of job "%s" was missed by %s',
                     'Execution of job "%s" skipped: maximum number of running instances reached (%d)')


class _QuietAPScheduler(logging.Filter):
    """Drops APScheduler's INFO chatter and the warnings Scheduler logs itself; keeps everything
    when the "apscheduler" logger is set to DEBUG (an operator chasing a scheduling problem)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger("apscheduler").isEnabledFor(logging.DEBUG):
            return True
        return record.levelno >= logging.WARNING and record.msg not in REPLACED_MESSAGES


class _BackgroundScheduler(BackgroundScheduler):
    """APScheduler 3.11's loop wakes once more after shutdown() and processes due jobs: it submits
    them to the executor it has just shut down (an error) and advances their next run time in the
    store, so that run is lost. A stopped scheduler processes nothing."""

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()


@dataclass(frozen=True)
class JobInfo:
    id: str
    seconds: int
    next_run_at: datetime | None


class Scheduler:
    """APScheduler's BackgroundScheduler over a SQLAlchemy job store in the project's database.

    Start it only while holding the scheduler lease (syndicate.service._lease): job stores must never be
    shared by two running schedulers. `clock` gives the `now` every job receives.
    """

    def __init__(
        self,
        database: Database,
        jobs: tuple[JobSpec, ...],
        *,
        misfire_grace: int,
        clock: Clock = utc_now,
    ) -> None:
        self.database = database
        self.jobs: Mapping[str, JobSpec] = {job.id: job for job in jobs}
        self.misfire_grace = misfire_grace
        self.clock = clock
        self.stop_event = threading.Event()  # set by shutdown(): the job in flight stops after its current message
        self.key = uuid.uuid4().hex
        self._scheduler: BackgroundScheduler | None = None
        self._quiet = _QuietAPScheduler()

    @property
    def running(self) -> bool:
        return self._scheduler is not None

    def _make(self) -> BackgroundScheduler:
        return _BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.database.engine, tablename=JOBS_TABLE)},
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self.misfire_grace},
            timezone=UTC,
        )

    def open(self) -> None:
        """Start APScheduler paused (job store ready, nothing runs) and register this scheduler."""
        if self._scheduler is not None:
            return
        for name in APSCHEDULER_LOGGERS:
            logging.getLogger(name).addFilter(self._quiet)
        self._scheduler = self._make()
        self._scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        with _RUNNING_LOCK:
            _RUNNING[self.key] = self
        self._scheduler.start(paused=True)

    def _on_event(self, event: JobEvent) -> None:
        """APScheduler's missed and still-running events, as one line each naming the job."""
        if event.code == EVENT_JOB_MISSED:
            scheduled = event.scheduled_run_time
            late = int((utc_now() - scheduled).total_seconds())  # APScheduler judges by the real clock
            log.warning("job skipped: missed by more than the grace time job=%s scheduled_at=%s late=%ds grace=%ds",
                        event.job_id, scheduled.astimezone(UTC).isoformat(), late, self.misfire_grace)
        else:
            log.warning("job skipped: its previous run is still going job=%s", event.job_id)

    def install_jobs(self, now: datetime | None = None) -> None:
        """Add or replace every job under its id. A job already stored with the same interval keeps
        its next run time, so a run missed while the service was down is caught up (once, when
        within the misfire grace) instead of pushed back; a new or changed job first runs soon."""
        assert self._scheduler is not None, "open() first"
        now = now or self.clock()
        for job in self.jobs.values():
            stored = self._scheduler.get_job(job.id)
            same = stored is not None and getattr(stored.trigger, "interval", None) == timedelta(seconds=job.seconds)
            next_run = stored.next_run_time if same and stored.next_run_time else now + FIRST_RUN_DELAY
            self._scheduler.add_job(
                run_job, "interval", args=(self.key, job.id), id=job.id, name=job.id,
                seconds=job.seconds, next_run_time=next_run, replace_existing=True,
            )
        for stored in self._scheduler.get_jobs():
            if stored.id not in self.jobs:
                log.info("job removed: no longer scheduled job=%s", stored.id)
                stored.remove()

    def start(self) -> None:
        """Open, install the jobs and let them run."""
        self.open()
        self.install_jobs()
        assert self._scheduler is not None
        self._scheduler.resume()
        log.info("scheduler started jobs=%s", ",".join(sorted(self.jobs)))

    def run(self, job_id: str) -> None:
        """Run one job now with the clock's time; a failure is logged, never raised into APScheduler."""
        if self.stop_event.is_set():
            log.info("job not started: shutting down job=%s", job_id)
            return
        job = self.jobs.get(job_id)
        if job is None:
            log.warning("job skipped: unknown job=%s", job_id)
            return
        now = self.clock()
        started = time.monotonic()
        log.debug("job starting job=%s now=%s", job_id, now.isoformat())
        try:
            result = job.task(now, self.stop_event)
        except Exception:
            log.exception("job failed job=%s", job_id)
            return
        run_id = getattr(result, "run_id", 0)
        level = logging.INFO if run_id else logging.DEBUG  # a job that found nothing to do is no news
        log.log(level, "job done job=%s run=%s seconds=%.2f", job_id, run_id or "-", time.monotonic() - started)

    def job_infos(self) -> list[JobInfo]:
        """The stored jobs with their next run times (for /api/status and /healthz)."""
        if self._scheduler is None:
            return []
        return [
            JobInfo(job.id, int(job.trigger.interval.total_seconds()), job.next_run_time)
            for job in self._scheduler.get_jobs()
        ]

    def shutdown(self, *, wait: bool = True) -> None:
        """Take no new runs and set the stop event; with `wait`, let the running job finish its
        message in flight (work() checks the event between messages)."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        self.stop_event.set()
        if scheduler.running:
            scheduler.shutdown(wait=wait)
        with _RUNNING_LOCK:
            _RUNNING.pop(self.key, None)
        for name in APSCHEDULER_LOGGERS:
            logging.getLogger(name).removeFilter(self._quiet)
        log.info("scheduler stopped")

"""The scheduler over the real DeliveryService: digest timing with an injected clock (timezones, both DST
changes, downtime) against a real database, real articles and the memory mail backend; and the real
APScheduler job store (jobs kept across restarts without copies, a missed run caught up once or skipped)."""

from __future__ import annotations

import email
import email.policy
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, table

from syndicate.config import Settings
from syndicate.delivery import DeliveryService
from syndicate.mail.memory import MemoryBackend
from syndicate.service._scheduler import DIGESTS, JOBS_TABLE, PRUNE, REBUILD, RETRIES, Scheduler, delivery_jobs
from syndicate.storage._database import Database
from syndicate.subscribers._store import SubscriberDefaults, SubscriberStore, new_subscriber
from syndicate.wiring import content_source, delivery_config
from tests.outbox_support import SECRET, settings_for
from tests.site_helpers import write_article

PARIS = ZoneInfo("Europe/Paris")


class Clock:
    """The time every job is told it is; tests move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Newsroom:
    """A content folder, a real DeliveryService over a real database, and the one memory backend
    every sending pass uses: what a subscriber would find in their inbox."""

    settings: Settings
    database: Database
    delivery: DeliveryService
    backend: MemoryBackend

    def inbox(self) -> list[tuple[str, datetime]]:
        """(recipient, the message's Date header) of every digest sent, in order."""
        sent = []
        for message in self.backend.outbox:
            parsed = email.message_from_bytes(message.data, policy=email.policy.default)
            assert parsed["Subject"], "a digest without a subject"
            sent.append((message.recipients[0], parsedate_to_datetime(parsed["Date"])))
        return sent

    def add_subscriber(self, address: str, *, now: datetime, timezone="Europe/Paris", hour=8, frequency="daily", weekday=0):
        new = new_subscriber(address, categories=(), valid_categories=(), defaults=SubscriberDefaults(),
                             timezone=timezone, send_hour=hour, frequency=frequency, weekday=weekday)
        return SubscriberStore(self.database).add(new, now=now, confirmed=True)

    def scheduler(self, clock=None, **schedule) -> Scheduler:
        settings = self.settings.model_copy(update={"schedule": self.settings.schedule.model_copy(update=schedule)})
        extra = {} if clock is None else {"clock": clock}
        return Scheduler(self.database, delivery_jobs(settings, self.delivery, lambda: None),
                         misfire_grace=settings.schedule.misfire_grace, **extra)


@pytest.fixture
def newsroom(tmp_path, database, database_url):
    """Articles every three hours from 2026-03-20 to 2026-11-01 (both DST changes and June inside),
    published in the content folder the delivery service reads."""
    content = tmp_path / "content"
    for span_start, days in ((datetime(2026, 3, 26, tzinfo=UTC), 6), (datetime(2026, 5, 31, tzinfo=UTC), 12),
                             (datetime(2026, 10, 22, tzinfo=UTC), 6)):
        for step in range(days * 8):
            when = span_start + timedelta(hours=3 * step)
            name = f"{when:%Y%m%d%H}"
            write_article(content, name, title=f"News of {when:%d %b %H:%M}", categories=["city"], date=when.isoformat())
    settings = settings_for(tmp_path, database_url)
    backend = MemoryBackend()
    delivery = DeliveryService(delivery_config(settings), database, content_source(settings), backend_factory=lambda: backend, environ=SECRET)
    return Newsroom(settings, database, delivery, backend)


def run_digests_every(scheduler: Scheduler, clock: Clock, start: datetime, end: datetime, step: timedelta) -> None:
    clock.now = start
    while clock.now < end:
        scheduler.run(DIGESTS)
        clock.now += step


SPRING_FORWARD, FALL_BACK = date(2026, 3, 29), date(2026, 10, 25)
EVERY_15_MIN, HOURLY_OFF_THE_HOUR = (900, 0), (3600, 7 * 60)  # (interval, offset of the first run) in seconds


def _dst_case(database: str, change: str, every: str):
    change_day = {"spring-forward": SPRING_FORWARD, "fall-back": FALL_BACK}[change]
    interval, offset = {"every-15-min": EVERY_15_MIN, "hourly-off-the-hour": HOURLY_OFF_THE_HOUR}[every]
    marks = [pytest.mark.postgres] if database == "postgres" else []
    if every == "every-15-min":
        marks.append(pytest.mark.slow)  # 288 digest runs: ~6 s
    return pytest.param(database, change_day, interval, offset, marks=marks, id=f"{database}-{every}-{change}")


# Both changes at both intervals on SQLite. PostgreSQL (where the stored send times are timestamptz)
# takes each change and each interval once: the 15-min runs land on 08:00 exactly through the
# repeated hour of the fall-back, the hourly ones come after 08:00 across the skipped hour.
@pytest.mark.parametrize("database_url,change_day,interval,offset", [
    _dst_case("sqlite", "spring-forward", "every-15-min"),
    _dst_case("sqlite", "fall-back", "every-15-min"),
    _dst_case("sqlite", "spring-forward", "hourly-off-the-hour"),
    _dst_case("sqlite", "fall-back", "hourly-off-the-hour"),
    _dst_case("postgres", "fall-back", "every-15-min"),
    _dst_case("postgres", "spring-forward", "hourly-off-the-hour"),
], indirect=["database_url"])
def test_paris_8am_gets_exactly_one_digest_a_day_across_dst_changes(newsroom, change_day, interval, offset):
    start = datetime.combine(change_day - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    clock = Clock(start)
    newsroom.add_subscriber("ann@example.org", now=start)
    scheduler = newsroom.scheduler(clock, digest_interval=interval)

    run_digests_every(scheduler, clock, start + timedelta(seconds=offset), start + timedelta(days=3), timedelta(seconds=interval))

    local = [when.astimezone(PARIS) for _, when in newsroom.inbox()]
    per_day = Counter(when.date() for when in local)
    assert per_day == {change_day + timedelta(days=d): 1 for d in (-1, 0, 1)}, local
    for when in local:  # at 08:00 local time, or at the first run after it
        eight = datetime.combine(when.date(), datetime.min.time().replace(hour=8), tzinfo=PARIS)
        assert timedelta(0) <= when - eight < timedelta(seconds=interval)


@pytest.mark.slow  # a week of hourly digest runs: ~4 s
def test_each_subscriber_gets_their_own_local_send_hour(newsroom):
    start = datetime(2026, 6, 1, tzinfo=UTC)
    clock = Clock(start)
    newsroom.add_subscriber("tokyo@example.org", now=start, timezone="Asia/Tokyo", hour=7)
    newsroom.add_subscriber("ny@example.org", now=start, timezone="America/New_York", hour=18)
    newsroom.add_subscriber("weekly@example.org", now=start, hour=9, frequency="weekly", weekday=4)
    scheduler = newsroom.scheduler(clock, digest_interval=3600)

    run_digests_every(scheduler, clock, start, start + timedelta(days=7), timedelta(hours=1))

    inbox = newsroom.inbox()
    assert Counter(address for address, _ in inbox) == {"tokyo@example.org": 7, "ny@example.org": 7, "weekly@example.org": 1}
    when = dict(inbox)  # the last digest of each
    assert when["tokyo@example.org"].astimezone(ZoneInfo("Asia/Tokyo")).hour == 7
    assert when["ny@example.org"].astimezone(ZoneInfo("America/New_York")).hour == 18
    weekly = when["weekly@example.org"].astimezone(PARIS)
    assert (weekly.weekday(), weekly.hour) == (4, 9)


@pytest.mark.slow  # two days of digest runs every 15 min: ~4 s
@pytest.mark.parametrize("grace_hours,expected_on_the_day", [(4, 1), (1, 0)], ids=["within-grace", "too-late"])
def test_a_digest_missed_during_downtime_is_sent_once_or_skipped_and_logged(newsroom, caplog, grace_hours, expected_on_the_day):
    day = datetime(2026, 6, 10, tzinfo=UTC)
    clock = Clock(day)
    newsroom.add_subscriber("ann@example.org", now=day)
    scheduler = newsroom.scheduler(clock, digest_interval=900, misfire_grace=grace_hours * 3600)

    down, up = datetime(2026, 6, 10, 7, tzinfo=PARIS), datetime(2026, 6, 10, 10, 30, tzinfo=PARIS)  # 08:00 falls in between
    run_digests_every(scheduler, clock, day, down, timedelta(minutes=15))
    run_digests_every(scheduler, clock, up, day + timedelta(days=2), timedelta(minutes=15))

    inbox = newsroom.inbox()
    per_day = Counter(when.astimezone(PARIS).date() for _, when in inbox)
    assert per_day[date(2026, 6, 10)] == expected_on_the_day
    assert per_day[date(2026, 6, 11)] == 1  # back to normal the next morning, no catch-up burst
    if expected_on_the_day:
        assert inbox[0][1] == up.astimezone(UTC)
    else:
        assert "digest missed by more than the grace time" in caplog.text
        assert "ann@example.org" in caplog.text


def count_stored_jobs(database) -> int:
    with database.read() as connection:
        return connection.execute(select(func.count()).select_from(table(JOBS_TABLE))).scalar_one()


def test_jobs_keep_their_ids_and_next_runs_across_restarts_without_copies(newsroom):
    first = newsroom.scheduler()
    first.start()
    before = {job.id: job.next_run_at for job in first.job_infos()}
    first.shutdown()

    second = newsroom.scheduler()
    second.start()
    after = {job.id: job.next_run_at for job in second.job_infos()}
    second.shutdown()
    assert set(before) == {REBUILD, DIGESTS, RETRIES, PRUNE}
    assert after == before
    assert count_stored_jobs(newsroom.database) == 4

    third = newsroom.scheduler(rebuild_interval=300)
    third.start()
    jobs = {job.id: job for job in third.job_infos()}
    third.shutdown()
    assert jobs[REBUILD].seconds == 300
    assert count_stored_jobs(newsroom.database) == 4


def test_the_digest_job_runs_at_least_hourly_whatever_the_config_says(newsroom):
    scheduler = newsroom.scheduler(digest_interval=6 * 3600)
    assert scheduler.jobs[DIGESTS].seconds == 3600


def wait_for(condition, timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def digest_job_missed_during_downtime(newsroom: Newsroom, *, grace: int, down_for: timedelta) -> Scheduler:
    """The digest job as stored by a scheduler that stopped `down_for` ago (its run every 15 min missed
    several times since), and a subscriber whose send time passed during the downtime; restarted now.
    Its runs fall `down_for` + 2 s (the first-run delay) + a multiple of 15 min after `now`: with a
    `down_for` that is not a multiple of 15 min, the run after the catch-up is minutes away, not 2 s
    (a test slower than 2 s on a busy machine would see that run come due too)."""
    now = datetime.now(UTC)
    due = (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    write_article(newsroom.settings.content.folder, "fresh", title="Fresh news", categories=["city"],
                  date=(due - timedelta(hours=1)).isoformat())
    newsroom.add_subscriber("ann@example.org", now=due - timedelta(minutes=1), timezone="UTC", hour=due.hour)
    before = newsroom.scheduler(misfire_grace=grace)
    before.open()
    before.install_jobs(now - down_for)
    before.shutdown()
    restarted = newsroom.scheduler(misfire_grace=grace)
    restarted.jobs = {DIGESTS: restarted.jobs[DIGESTS]}  # the other jobs would run soon after start too
    return restarted


def test_a_digest_job_missed_while_stopped_runs_once_when_within_grace(newsroom):
    scheduler = digest_job_missed_during_downtime(newsroom, grace=4 * 3600, down_for=timedelta(hours=3, minutes=5))
    scheduler.start()
    try:
        assert wait_for(lambda: newsroom.backend.outbox), "the missed run never happened"
        time.sleep(0.5)
        assert [address for address, _ in newsroom.inbox()] == ["ann@example.org"]  # three missed runs, one digest
        assert scheduler.job_infos()[0].next_run_at > datetime.now(UTC)
    finally:
        scheduler.shutdown()


def test_a_digest_job_missed_beyond_grace_is_skipped_and_logged_once(newsroom, caplog):
    scheduler = digest_job_missed_during_downtime(newsroom, grace=600, down_for=timedelta(hours=2, minutes=42))  # missed by ~12 min
    caplog.set_level(logging.INFO)
    scheduler.start()
    try:
        assert wait_for(lambda: "job skipped: missed by more than the grace time" in caplog.text), caplog.text
        assert newsroom.inbox() == []
        assert scheduler.job_infos()[0].next_run_at > datetime.now(UTC)
    finally:
        scheduler.shutdown()
    [missed] = [r for r in caplog.records if "missed" in r.getMessage()]
    assert "job=digests" in missed.getMessage() and "grace=600s" in missed.getMessage()
    assert not [r for r in caplog.records if r.name.startswith("apscheduler") and r.levelno < logging.ERROR]


class StopAfterFirst(MemoryBackend):
    """Keeps the first message "in flight" (the SMTP server still answering) until the scheduler is told to stop."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = threading.Event()
        self.stop: threading.Event | None = None

    def deliver(self, message):
        result = super().deliver(message)
        if len(self.outbox) == 1:
            self.in_flight.set()
            assert self.stop is not None and self.stop.wait(10)
        return result


def test_shutdown_lets_the_message_in_flight_finish_and_leaves_the_rest_queued(newsroom):
    now = datetime.now(UTC)
    write_article(newsroom.settings.content.folder, "today", title="Today", categories=["city"],
                  date=(now - timedelta(hours=1)).isoformat())
    for name in ("a", "b", "c"):
        newsroom.add_subscriber(f"{name}@example.org", now=now - timedelta(days=2), timezone="UTC", hour=0)
    backend = StopAfterFirst()
    newsroom.delivery.backend_factory = lambda: backend
    scheduler = newsroom.scheduler(misfire_grace=7 * 24 * 3600)
    scheduler.jobs = {DIGESTS: scheduler.jobs[DIGESTS]}
    backend.stop = scheduler.stop_event
    scheduler.start()
    assert backend.in_flight.wait(10), "the digest job never started"
    scheduler.shutdown(wait=True)

    assert len(backend.outbox) == 1
    [run] = newsroom.delivery.recent_runs()
    assert (run.kind, run.total, run.sent, run.queued) == ("scheduled", 3, 1, 2)  # the rest stays queued

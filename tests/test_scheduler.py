"""The scheduler: digest timing with an injected clock (timezones, both DST changes, downtime), and the real
APScheduler job store (jobs kept across restarts without copies, a missed run caught up once or skipped)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, table

from syndicate.config import settings_from_mapping
from syndicate.scheduler import DIGESTS, JOBS_TABLE, PRUNE, REBUILD, RETRIES, JobSpec, Scheduler, delivery_jobs
from syndicate.subscribers import SubscriberDefaults, SubscriberStore, new_subscriber
from tests.small_delivery import SmallDeliveryService

PARIS = ZoneInfo("Europe/Paris")


class Clock:
    """The time every job is told it is; tests move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def add_subscriber(database, email: str, *, now: datetime, timezone="Europe/Paris", hour=8, frequency="daily", weekday=0):
    new = new_subscriber(email, categories=(), valid_categories=(), defaults=SubscriberDefaults(),
                         timezone=timezone, send_hour=hour, frequency=frequency, weekday=weekday)
    return SubscriberStore(database).add(new, now=now, confirmed=True)


def run_digests_every(scheduler: Scheduler, clock: Clock, start: datetime, end: datetime, step: timedelta) -> None:
    clock.now = start
    while clock.now < end:
        scheduler.run(DIGESTS)
        clock.now += step


def digest_scheduler(database, delivery, clock, **schedule) -> Scheduler:
    settings = settings_from_mapping({"schedule": schedule})
    return Scheduler(database, delivery_jobs(settings, delivery, lambda: None),
                     misfire_grace=settings.schedule.misfire_grace, clock=clock)


@pytest.mark.parametrize("change_day", [date(2026, 3, 29), date(2026, 10, 25)], ids=["spring-forward", "fall-back"])
@pytest.mark.parametrize("interval,offset", [(900, 0), (3600, 7 * 60)], ids=["every-15-min", "hourly-off-the-hour"])
def test_paris_8am_gets_exactly_one_digest_a_day_across_dst_changes(database, change_day, interval, offset):
    start = datetime.combine(change_day - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    clock = Clock(start)
    delivery = SmallDeliveryService(database)
    add_subscriber(database, "ann@example.org", now=start)
    scheduler = digest_scheduler(database, delivery, clock, digest_interval=interval)

    run_digests_every(scheduler, clock, start + timedelta(seconds=offset), start + timedelta(days=4), timedelta(seconds=interval))

    local = [when.astimezone(PARIS) for _, when in delivery.sent]
    per_day = Counter(when.date() for when in local)
    days = [change_day + timedelta(days=d) for d in (-1, 0, 1)]
    assert [per_day[d] for d in days] == [1, 1, 1], local
    for when in local:  # at 08:00 local time, or at the first run after it
        eight = datetime.combine(when.date(), datetime.min.time().replace(hour=8), tzinfo=PARIS)
        assert timedelta(0) <= when - eight < timedelta(seconds=interval)


def test_each_subscriber_gets_their_own_local_send_hour(database):
    start = datetime(2026, 6, 1, tzinfo=UTC)
    clock = Clock(start)
    delivery = SmallDeliveryService(database)
    add_subscriber(database, "tokyo@example.org", now=start, timezone="Asia/Tokyo", hour=7)
    add_subscriber(database, "ny@example.org", now=start, timezone="America/New_York", hour=18)
    add_subscriber(database, "weekly@example.org", now=start, timezone="Europe/Paris", hour=9, frequency="weekly", weekday=4)
    scheduler = digest_scheduler(database, delivery, clock, digest_interval=900)

    run_digests_every(scheduler, clock, start, start + timedelta(days=7), timedelta(minutes=15))

    sends = Counter(email for email, _ in delivery.sent)
    assert sends == {"tokyo@example.org": 7, "ny@example.org": 7, "weekly@example.org": 1}
    when = {email: at for email, at in delivery.sent}
    assert when["tokyo@example.org"].astimezone(ZoneInfo("Asia/Tokyo")).hour == 7
    assert when["ny@example.org"].astimezone(ZoneInfo("America/New_York")).hour == 18
    weekly = when["weekly@example.org"].astimezone(PARIS)
    assert (weekly.weekday(), weekly.hour) == (4, 9)


@pytest.mark.parametrize("grace_hours,expected_on_the_day", [(4, 1), (1, 0)], ids=["within-grace", "too-late"])
def test_a_digest_missed_during_downtime_is_sent_once_or_skipped(database, caplog, grace_hours, expected_on_the_day):
    day = datetime(2026, 6, 10, tzinfo=UTC)
    clock = Clock(day)
    delivery = SmallDeliveryService(database)
    add_subscriber(database, "ann@example.org", now=day)
    scheduler = digest_scheduler(database, delivery, clock, digest_interval=900, misfire_grace=grace_hours * 3600)

    down, up = datetime(2026, 6, 10, 7, tzinfo=PARIS), datetime(2026, 6, 10, 10, 30, tzinfo=PARIS)  # 08:00 falls in between
    run_digests_every(scheduler, clock, day, down, timedelta(minutes=15))
    run_digests_every(scheduler, clock, up, day + timedelta(days=2), timedelta(minutes=15))

    per_day = Counter(when.astimezone(PARIS).date() for _, when in delivery.sent)
    assert per_day[date(2026, 6, 10)] == expected_on_the_day
    assert per_day[date(2026, 6, 11)] == 1  # back to normal the next morning, no catch-up burst
    if expected_on_the_day:
        assert delivery.sent[0][1] == up.astimezone(UTC)
    else:
        assert [email for email, _ in delivery.skipped] == ["ann@example.org"]
        assert "digest skipped: too late" in caplog.text


def count_stored_jobs(database) -> int:
    with database.read() as connection:
        return connection.execute(select(func.count()).select_from(table(JOBS_TABLE))).scalar_one()


def test_jobs_keep_their_ids_and_next_runs_across_restarts_without_copies(database):
    delivery = SmallDeliveryService(database)
    settings = settings_from_mapping({})
    first = Scheduler(database, delivery_jobs(settings, delivery, lambda: None), misfire_grace=3600)
    first.start()
    before = {job.id: job.next_run_at for job in first.job_infos()}
    first.shutdown()

    second = Scheduler(database, delivery_jobs(settings, delivery, lambda: None), misfire_grace=3600)
    second.start()
    after = {job.id: job.next_run_at for job in second.job_infos()}
    second.shutdown()
    assert set(before) == {REBUILD, DIGESTS, RETRIES, PRUNE}
    assert after == before
    assert count_stored_jobs(database) == 4

    changed = settings_from_mapping({"schedule": {"rebuild_interval": 300}})
    third = Scheduler(database, delivery_jobs(changed, delivery, lambda: None), misfire_grace=3600)
    third.start()
    jobs = {job.id: job for job in third.job_infos()}
    third.shutdown()
    assert jobs[REBUILD].seconds == 300
    assert count_stored_jobs(database) == 4


def test_the_digest_job_runs_at_least_hourly_whatever_the_config_says(database):
    settings = settings_from_mapping({"schedule": {"digest_interval": 6 * 3600}})
    jobs = {job.id: job for job in delivery_jobs(settings, SmallDeliveryService(database), lambda: None)}
    assert jobs[DIGESTS].seconds == 3600


def wait_for(condition, timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def stored_job_missed_during_downtime(database, calls, *, grace: int, down_for: timedelta) -> Scheduler:
    """A digest job stored by a scheduler that stopped `down_for` ago, restarted now."""
    jobs = (JobSpec(DIGESTS, 3600, lambda now, stop: calls.append(now)),)
    before = Scheduler(database, jobs, misfire_grace=grace)
    before.open()
    before.install_jobs(datetime.now(UTC) - down_for)  # its next run was due 3 intervals ago
    before.shutdown()
    return Scheduler(database, jobs, misfire_grace=grace)


def test_a_job_missed_while_stopped_runs_once_when_within_grace(database):
    calls: list[datetime] = []
    scheduler = stored_job_missed_during_downtime(database, calls, grace=7200, down_for=timedelta(hours=3))
    scheduler.start()
    try:
        assert wait_for(lambda: calls), "the missed run never happened"
        time.sleep(0.5)
        assert len(calls) == 1  # coalesced: three missed run times, one run
        assert scheduler.job_infos()[0].next_run_at > datetime.now(UTC)
    finally:
        scheduler.shutdown()


def test_a_job_missed_beyond_grace_is_skipped_and_logged(database, caplog):
    calls: list[datetime] = []
    scheduler = stored_job_missed_during_downtime(database, calls, grace=600, down_for=timedelta(hours=2, minutes=30))
    caplog.set_level("WARNING")
    scheduler.start()
    try:
        assert wait_for(lambda: "was missed by" in caplog.text), caplog.text
        assert calls == []
        assert scheduler.job_infos()[0].next_run_at > datetime.now(UTC)
    finally:
        scheduler.shutdown()


def test_shutdown_lets_the_message_in_flight_finish_and_leaves_the_rest(database):
    long_ago = datetime.now(UTC) - timedelta(days=2)
    for name in ("a", "b", "c"):
        add_subscriber(database, f"{name}@example.org", now=long_ago)
    in_flight = threading.Event()
    delivery = SmallDeliveryService(database)
    settings = settings_from_mapping({"schedule": {"misfire_grace": 7 * 24 * 3600}})
    scheduler = Scheduler(database, delivery_jobs(settings, delivery, lambda: None), misfire_grace=settings.schedule.misfire_grace)

    def first_message_sent() -> None:  # the message is "in flight" until the scheduler is told to stop
        in_flight.set()
        assert scheduler.stop_event.wait(10)

    delivery.on_message = first_message_sent
    scheduler.start()
    assert in_flight.wait(10), "the digest job never started"
    scheduler.shutdown(wait=True)

    assert [email for email, _ in delivery.sent] == ["a@example.org"]
    assert delivery.runs[1] == ["a@example.org", "b@example.org", "c@example.org"]  # planned: the rest stays queued

"""One scheduler per database: the lease, its heartbeat, standing by, and taking over when the holder dies."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from syndicate.service._lease import Lease, LeaseKeeper
from tests.service_helpers import RunningService, write_config


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


T0 = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_one_holder_at_a_time_and_a_takeover_after_expiry(database):
    clock = Clock(T0)
    first = Lease(database, seconds=60, clock=clock)
    second = Lease(database, seconds=60, clock=clock)

    assert first.acquire()
    assert not second.acquire()
    clock.now += timedelta(seconds=40)
    assert first.acquire()  # renewed: now good until T0 + 100 s
    clock.now = T0 + timedelta(seconds=90)
    assert not second.acquire()
    holder = first.holder()
    assert (holder.owner, holder.acquired_at, holder.expires_at) == (first.owner, T0, T0 + timedelta(seconds=100))

    clock.now = T0 + timedelta(seconds=100)  # the first process died: no renewal came
    assert second.acquire()
    assert second.holder().owner == second.owner
    assert not first.acquire()  # the old holder, back from a pause, does not get it back


def test_release_lets_a_standby_take_over_at_once(database):
    clock = Clock(T0)
    first = Lease(database, seconds=60, clock=clock)
    second = Lease(database, seconds=60, clock=clock)
    assert first.acquire()
    first.release()
    assert first.holder() is None
    assert second.acquire()
    first.release()  # not the holder: changes nothing
    assert second.holder().owner == second.owner


def test_the_standby_keeper_logs_once_and_starts_the_scheduler_when_it_takes_over(database, caplog):
    caplog.set_level(logging.INFO, logger="syndicate.service._lease")
    clock = Clock(T0)
    events: list[str] = []
    first = LeaseKeeper(Lease(database, seconds=30, clock=clock),
                        on_acquired=lambda: events.append("first up"), on_lost=lambda: events.append("first down"))
    second = LeaseKeeper(Lease(database, seconds=30, clock=clock),
                         on_acquired=lambda: events.append("second up"), on_lost=lambda: events.append("second down"))

    assert first.beat() and not second.beat()
    for _ in range(3):  # heartbeats every 10 s keep the lease with the first
        clock.now += timedelta(seconds=first.interval)
        assert first.beat() and not second.beat()
    assert events == ["first up"]
    assert caplog.text.count("standing by") == 1
    assert f"owner={first.lease.owner}" in caplog.text

    clock.now += timedelta(seconds=31)  # the first stops beating (killed): its lease runs out
    assert second.beat()
    assert not first.beat()
    assert events == ["first up", "second up", "first down"]

    second.stop()
    assert events[-1] == "second down"
    assert second.lease.holder() is None


@pytest.mark.timing
@pytest.mark.slow
def test_a_second_process_stands_by_and_takes_over_when_the_first_dies(tmp_path, database_url):
    config = write_config(tmp_path, database_url=database_url, extra="\n[schedule]\nlease_seconds = 5\n")
    with RunningService(config) as first:
        first.wait_for("scheduler lease acquired")
        first.wait_for("syndicate is running on")
        with RunningService(config) as second:
            second.wait_for("standing by: the scheduler runs in another process")
            assert f"pid={first.process.pid}" in second.output
            assert "scheduler started" not in second.output
            first.kill()  # SIGKILL: no release, the lease must expire
            died = datetime.now(UTC)
            second.wait_for("scheduler lease acquired", timeout=15)
            second.wait_for("scheduler started jobs=")
            assert datetime.now(UTC) - died < timedelta(seconds=5 + 5 / 3 + 3)
            assert second.terminate() == 0

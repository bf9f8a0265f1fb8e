"""`[delivery] mode = "workers"`: several `syndicate worker` processes against PostgreSQL and a real SMTP server.

Exactly once under a scheduled and a manual run planned at the same moment; a worker killed with
-9 has its claims recovered by another after `[outbox] claim_timeout`; a worker declared lost
stops by itself; SIGTERM finishes the messages in flight and puts the rest back; the shared
`[smtp] rate`, `domain_rate` and `connections` hold across workers; the mode is refused on SQLite.
"""

from __future__ import annotations

import email
import email.policy
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

from syndicate.config import settings_from_mapping
from syndicate.delivery._service import DeliveryService, SendRequest
from syndicate.delivery._worker import RELOAD_AFTER
from syndicate.storage.schema import deliveries, delivery_workers
from syndicate.wiring import Components
from tests.outbox_support import CATEGORIES, SECRET, add_subscribers, open_db, write_site
from tests.site_helpers import write_article
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)
from tests.worker_support import ROOT, WorkerProcess, message_ids, statuses, wait_until, worker_config

# PostgreSQL only: workers mode is refused on SQLite (the last tests).
PG = pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


@pytest.fixture
def deployment(tmp_path, smtp_server, database_url):
    """(config writer, server, database, now): a site, a migrated PostgreSQL schema, an SMTP server."""
    server = smtp_server()
    now = datetime.now(UTC)
    write_site(tmp_path, now=now)
    database = open_db(database_url)

    def config(**options):
        return worker_config(tmp_path, database_url, server.port, **options)

    yield config, server, database, now
    database.close()


def delivery_service(config_path, database) -> DeliveryService:
    import tomllib

    settings = settings_from_mapping(tomllib.loads(config_path.read_text()), path=config_path)
    return Components(settings, environ=SECRET, database=database).delivery


def stop_all(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.terminate()
    for worker in workers:
        worker.terminate()


@contextmanager
def three_workers(path, *args: str) -> Iterator[list[WorkerProcess]]:
    """Three `syndicate worker` processes with `args`, registered before the block, stopped after it."""
    workers = [WorkerProcess(path, *args) for _ in range(3)]
    try:
        for worker in workers:
            worker.wait_for(r"worker registered")
        yield workers
    finally:
        stop_all(workers)


@PG
@pytest.mark.slow
def test_three_workers_send_a_scheduled_and_a_manual_run_planned_together_exactly_once(deployment, database_url):
    config, server, database, now = deployment
    people = add_subscribers(database, 300, now=now)
    path = config()
    with three_workers(path, "--concurrency", "2", "--metrics-port", "0") as workers:
        service = delivery_service(path, database)
        plans = [
            threading.Thread(target=lambda: service.plan_scheduled(now, grace=timedelta(days=60))),
            threading.Thread(target=lambda: service.plan_manual(SendRequest(), now)),
        ]
        for plan in plans:
            plan.start()
        for plan in plans:
            plan.join()
        wait_until(lambda: len(server.received) >= len(people) and statuses(database)["sent"] >= len(people), 90,
                   "every digest sent")
        time.sleep(1)  # nothing more arrives
        port = int(workers[0].wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert Counter(r.recipients[0] for r in server.received) == Counter(p.email for p in people)
    assert max(message_ids(server.received).values()) == 1
    with database.read() as connection:
        runs = Counter(connection.execute(select(deliveries.c.run_id)).scalars().all())
        claimed_by = Counter(connection.execute(select(deliveries.c.claimed_by)).scalars().all())
    assert sum(runs.values()) == len(people), f"one delivery per subscriber across both runs: {runs}"
    assert len([w for w in claimed_by if w]) == 3 and min(claimed_by.values()) >= 20, f"all three worked: {claimed_by}"
    assert statuses(database) == Counter({"sent": len(people)})
    sent_here = float(re.search(r'syndicate_deliveries_total\{outcome="sent"\} (\S+)', metrics).group(1))
    assert sent_here >= 20, "the worker's /metrics counts what it sent"
    assert re.search(r'syndicate_smtp_replies_total\{code_class="2xx"\} ' + str(sent_here), metrics)
    assert 'syndicate_outbox_deliveries{status="queued"} 0.0' in metrics
    assert "syndicate_workers_alive 3.0" in metrics
    assert "syndicate_send_seconds_count" in metrics and "syndicate_claim_seconds_count" in metrics


@pytest.mark.timing
@PG
@pytest.mark.slow
def test_a_killed_worker_s_claims_are_resent_by_another_after_the_claim_timeout(deployment):
    config, server, database, now = deployment
    people = add_subscribers(database, 120, now=now)
    server.data_delay = 0.05
    path = config()
    first = WorkerProcess(path, "--concurrency", "2")
    first.wait_for(r"worker registered")
    delivery_service(path, database).plan_manual(SendRequest(), now)
    wait_until(lambda: len(server.received) >= 10, 30, "the first worker to be sending")
    first.kill()
    killed_at = time.monotonic()
    with database.read() as connection:
        stranded = connection.execute(select(deliveries.c.id).where(deliveries.c.status == "sending")).scalars().all()
    assert stranded, "the killed worker left claims behind"
    second = WorkerProcess(path, "--concurrency", "2")
    try:
        second.wait_for(r"worker lost \(no heartbeat for 3s\)", timeout=15)
        recovered_after = time.monotonic() - killed_at
        wait_until(lambda: statuses(database)["sent"] == len(people), 60, "every digest sent")
    finally:
        assert second.terminate() == 0
    # its last heartbeat was up to 1 s (claim_timeout / 3) before the kill; the second worker starts after it
    assert 2 <= recovered_after <= 3 + 3, f"recovered {recovered_after:.1f}s after the kill (timeout 3s, beat 1s)"
    ids = message_ids(server.received)
    assert Counter(r.recipients[0] for r in server.received).keys() == {p.email for p in people}
    twice = [mid for mid, n in ids.items() if n > 1]
    assert len(twice) <= len(stranded), "only messages in flight at the kill arrive twice"
    by_id = {}
    for received in server.received:
        mid = message_ids([received]).most_common(1)[0][0]
        assert by_id.setdefault(mid, received.recipients) == received.recipients, "a copy goes to the same recipient"
    assert statuses(database) == Counter({"sent": len(people)})


@pytest.mark.timing
@PG
@pytest.mark.slow
def test_a_worker_declared_lost_stops_sending_at_once(deployment):
    config, server, database, now = deployment
    add_subscribers(database, 200, now=now)
    server.data_delay = 0.1
    worker = WorkerProcess(config(), "--concurrency", "1")
    try:
        worker.wait_for(r"worker registered")
        delivery_service(config(), database).plan_manual(SendRequest(), now)
        wait_until(lambda: len(server.received) >= 3, 30, "sending")
        with database.write() as connection:  # what another worker does once its heartbeat is too old
            connection.execute(delete(delivery_workers))
        worker.wait_for(r"worker fenced off", timeout=5)
        code = worker.process.wait(15)
    finally:
        worker.kill() if worker.process.poll() is None else None
    assert code == 1
    arrived = len(server.received)
    time.sleep(1)
    assert len(server.received) == arrived, "nothing more is sent once fenced"
    assert arrived < 200


@pytest.mark.timing
@PG
@pytest.mark.slow
def test_sigterm_finishes_the_messages_in_flight_and_puts_the_rest_back(deployment):
    config, server, database, now = deployment
    people = add_subscribers(database, 100, now=now)
    server.data_delay = 0.3
    path = config()
    worker = WorkerProcess(path, "--concurrency", "2")
    worker.wait_for(r"worker registered")
    delivery_service(path, database).plan_manual(SendRequest(), now)
    wait_until(lambda: len(server.received) >= 4, 30, "sending")
    started = time.monotonic()
    assert worker.terminate() == 0
    assert time.monotonic() - started < 5, "stops within the replies in flight"
    counts = statuses(database)
    assert counts["sending"] == 0, counts
    assert counts["sent"] == len(server.received), "every message the server accepted is recorded sent"
    assert counts["queued"] == len(people) - counts["sent"], "the rest are back in the queue, none failed"
    with database.read() as connection:
        assert connection.execute(select(delivery_workers)).first() is None, "the worker left the registry"
    server.data_delay = 0.0  # the slow replies only had to keep messages in flight at the SIGTERM
    again = WorkerProcess(path, "--concurrency", "2")
    try:
        wait_until(lambda: statuses(database)["sent"] == len(people), 60, "the rest sent by the next worker")
    finally:
        again.terminate()
    assert sorted(r.recipients[0] for r in server.received) == sorted(p.email for p in people)


@pytest.mark.timing
@PG
@pytest.mark.slow
def test_a_worker_held_back_by_a_domain_s_pace_stops_at_once_on_sigterm_and_puts_those_back(deployment):
    config, server, database, now = deployment
    people = add_subscribers(database, 150, now=now)
    path = config(smtp='domain_rate = {"example.org" = 5}')
    worker = WorkerProcess(path, "--concurrency", "2")
    try:
        worker.wait_for(r"worker registered")
        delivery_service(path, database).plan_manual(SendRequest(), now)
        wait_until(lambda: len(server.received) >= 3, 30, "sending at the domain's pace")
        # Claimed and built but waiting for their slot (5 a second): most of the run.
        wait_until(lambda: statuses(database)["sending"] >= 100, 30, "messages held back by the pace")
        started = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        worker.process.send_signal(signal.SIGTERM)  # twice in a row, as a supervisor or a stop script may
        code = worker.process.wait(15)
        took = time.monotonic() - started
    finally:
        worker.kill() if worker.process.poll() is None else None
    assert code == 0, worker.log[-3000:]
    assert took < 5, f"exited {took:.1f}s after SIGTERM: waiting for paced slots instead of stopping"
    counts = statuses(database)
    assert counts["sending"] == 0, counts
    assert counts["sent"] == len(server.received), "every message the server accepted is recorded sent"
    assert counts["queued"] == len(people) - counts["sent"], "the ones held back are in the queue again"


@PG
@pytest.mark.slow
@pytest.mark.parametrize("limit,rate", [("rate", 40), ("domain_rate", 30)])
def test_the_rate_holds_for_all_workers_together_within_ten_percent(deployment, limit, rate):
    config, server, database, now = deployment
    add_subscribers(database, 12 * rate, now=now)
    smtp = f"rate = {rate}" if limit == "rate" else f'domain_rate = {{"example.org" = {rate}}}'
    path = config(smtp=smtp)
    with three_workers(path, "--concurrency", "2"):
        delivery_service(path, database).plan_manual(SendRequest(), now)
        wait_until(lambda: len(server.received) >= rate, 30, "sending under way")
        time.sleep(1)
        before, started = len(server.received), time.monotonic()
        time.sleep(5)
        during, seconds = len(server.received) - before, time.monotonic() - started
        with database.read() as connection:
            claimers = set(connection.execute(select(deliveries.c.claimed_by).where(deliveries.c.claimed_by.is_not(None)))
                           .scalars())
    assert abs(during / seconds - rate) <= 0.1 * rate, f"{during} messages in {seconds:.2f}s, limit {rate}/s"
    assert len(claimers) == 3, "all three workers were sending"


@PG
@pytest.mark.slow
@pytest.mark.parametrize("limit", [2, 16])
def test_smtp_connections_are_for_all_workers_together(deployment, limit):
    config, server, database, now = deployment
    people = add_subscribers(database, 400, now=now)  # several claims' worth (64 a worker): every worker claims
    server.data_delay = 0.02  # each message keeps its connection busy: unlimited, the workers would open six
    path = config(connections=limit)
    with three_workers(path, "--concurrency", "2") as workers:
        delivery_service(path, database).plan_manual(SendRequest(), now)
        wait_until(lambda: statuses(database)["sent"] >= len(people), 60, "every digest sent")
    assert Counter(r.recipients[0] for r in server.received) == Counter(p.email for p in people)
    assert max(message_ids(server.received).values()) == 1
    if limit == 2:
        assert server.peak_sessions <= 2, f"{server.peak_sessions} SMTP connections open at once, [smtp] connections = 2"
        assert any("waiting for an SMTP connection slot" in w.log for w in workers), "a worker found every slot taken"
    else:  # the same run with room for all: the workers open more than two (each its own two)
        assert server.peak_sessions > 2, f"{server.peak_sessions} SMTP connections open at once, 3 workers x 2"


@pytest.mark.slow  # three real processes: ~4 s
def test_workers_mode_is_refused_on_sqlite(tmp_path):
    write_site(tmp_path)
    path = worker_config(tmp_path, f"sqlite:///{tmp_path / 'syndicate.db'}", 2525)
    commands = (["worker"], ["send", "--yes"], ["run", "--port", "0"])
    processes = [subprocess.Popen([sys.executable, "-m", "syndicate", "--config", str(path), *command], cwd=ROOT,
                                  env={**SECRET, "PATH": "/usr/bin:/bin"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for command in commands]  # the three start-ups side by side
    for command, process in zip(commands, processes):
        _, stderr = process.communicate(timeout=60)
        assert process.returncode != 0, command
        assert '[delivery] mode: "workers" needs PostgreSQL, but [database] url is sqlite' in stderr, stderr


@PG
def test_a_worker_refuses_to_start_in_inline_mode(deployment, database_url, tmp_path):
    config, server, database, now = deployment
    path = config(mode="inline")
    done = subprocess.run([sys.executable, "-m", "syndicate", "--config", str(path), "worker"], cwd=ROOT,
                          env={**SECRET, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert 'syndicate worker sends only with [delivery] mode = "workers"' in done.stderr


def send_command(path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syndicate", "--config", str(path), "send", "--yes", *args], cwd=ROOT,
                          env={**SECRET, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@PG
def test_a_worker_reloads_the_content_for_a_run_naming_an_article_planned_after_it_started(deployment, tmp_path):
    """A worker outlives runs: an article written after it loaded the content is in the next run's
    digests (the content reloaded once RELOAD_AFTER seconds have passed since the last load)."""
    config, server, database, now = deployment
    people = add_subscribers(database, 4, now=now, categories=CATEGORIES[:1])
    path = config()
    started = time.monotonic()
    worker = WorkerProcess(path, "--concurrency", "1")
    try:
        worker.wait_for(r"worker registered")
        assert send_command(path).returncode == 0
        wait_until(lambda: statuses(database)["sent"] == 4, 30, "the first run")
        write_article(tmp_path / "content", "late", title="The Late Story", categories=[CATEGORIES[0]],
                      date=(now + timedelta(seconds=1)).isoformat())
        time.sleep(max(0.0, RELOAD_AFTER + 0.5 - (time.monotonic() - started)))
        assert send_command(path).returncode == 0
        wait_until(lambda: statuses(database)["sent"] == 8, 30, "the second run")
        worker.wait_for(r"content reloaded: a delivery names an article this worker had not loaded")
    finally:
        worker.terminate()
    by_person: dict[str, list[str]] = {}
    for message in server.received:
        text = email.message_from_bytes(message.data, policy=email.policy.default).get_body(("plain",)).get_content()
        by_person.setdefault(message.recipients[0], []).append(text)
    assert sorted(by_person) == sorted(p.email for p in people)
    for first, second in by_person.values():
        assert "The Late Story" not in first and "Story 0" in first
        assert "The Late Story" in second and "Story 0" not in second, "the second digest: only what is new"


@pytest.mark.slow
@PG
def test_in_workers_mode_send_only_plans_and_the_workers_send(deployment):
    config, server, database, now = deployment
    people = add_subscribers(database, 60, now=now)
    path = config()
    done = send_command(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "60 digests planned; `syndicate worker` processes send them" in done.stderr
    time.sleep(0.5)
    assert server.received == [] and statuses(database) == Counter({"queued": 60}), "nothing sent without a worker"
    worker = WorkerProcess(path, "--concurrency", "2")
    try:
        wait_until(lambda: statuses(database)["sent"] == 60, 60, "the worker to send the run")
    finally:
        worker.terminate()
    assert sorted(r.recipients[0] for r in server.received) == sorted(p.email for p in people)


@PG
@pytest.mark.slow
def test_send_wait_shows_the_progress_of_a_run_the_workers_send(deployment):
    config, server, database, now = deployment
    add_subscribers(database, 150, now=now)
    server.data_delay = 0.03
    path = config()
    worker = WorkerProcess(path, "--concurrency", "1")
    try:
        worker.wait_for(r"worker registered")
        done = send_command(path, "--wait")
    finally:
        worker.terminate()
    assert done.returncode == 0, done.stdout + done.stderr
    progress = re.findall(r"run \d+: sent (\d+)/150", done.stdout)
    assert len(progress) >= 2 and int(progress[0]) < 150, f"progress shown while sending: {done.stdout}"
    assert re.search(r"run \d+ finished: sent 150/150", done.stdout), done.stdout
    assert len(server.received) == 150


@PG
@pytest.mark.slow
def test_the_service_in_workers_mode_only_plans_and_serves_its_metrics(tmp_path, database_url):
    import json

    from tests.service_helpers import RunningService, write_config

    database = open_db(database_url)
    now = datetime.now(UTC)
    people = add_subscribers(database, 40, now=now)
    config = write_config(tmp_path, database_url=database_url, content=write_site(tmp_path, now=now),
                          extra='[delivery]\nmode = "workers"\n')
    token = "t" * 32
    with RunningService(config, env={"SYNDICATE_SECRET": "s" * 32, "SYNDICATE_ADMIN_TOKEN": token}) as service:
        base = service.base_url
        service.wait_for(r"scheduler started")
        request = urllib.request.Request(f"{base}/api/sends", data=b"{}", method="POST",
                                         headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        accepted = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert accepted["run_id"] > 0
        time.sleep(3)  # the scheduler's first digest job runs 2 s after start: it plans too, and sends nothing
        counts = statuses(database)
        scrape = urllib.request.Request(f"{base}/metrics", headers={"authorization": f"Bearer {token}"})
        metrics = urllib.request.urlopen(scrape, timeout=10).read().decode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/metrics", timeout=10)
        assert service.terminate() == 0
    database.close()
    assert counts == Counter({"queued": len(people)}), "planned once per subscriber, none sent by the service"
    assert not (tmp_path / "var" / "outbox").exists() or not any((tmp_path / "var" / "outbox").iterdir())
    assert refused.value.code == 401
    assert f'syndicate_outbox_deliveries{{status="queued"}} {float(len(people))}' in metrics
    assert re.search(rf'syndicate_scheduler_lease_holder\{{host="[^"]+",pid="{service.process.pid}"\}} 1\.0', metrics)
    assert re.search(r"syndicate_build_seconds_count [1-9]", metrics)
    assert re.search(r"syndicate_runs_in_flight [1-9]", metrics)

"""A large run sent by several worker processes (`[outbox] workers`): `syndicate send` in a process
of its own (this one runs the SMTP server's thread, and a process with threads never forks), against
a real SMTP server. Every digest arrives once, the workers hold their own claims, they stop with
their parent (recording their messages in flight), and a worker that cannot log in stops the send with a clear error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from syndicate.delivery._service import PARALLEL_FROM
from syndicate.storage.schema import deliveries
from tests.outbox_support import SECRET, add_subscribers, open_db, write_site
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIBERS = PARALLEL_FROM + 200


@pytest.fixture
def send(tmp_path, smtp_server, database_url):
    """(start, server, database, people) on SQLite or PostgreSQL: `start()` starts `syndicate send --yes` (a Popen)."""
    server = smtp_server(username="ann", password="pw")
    now = datetime.now(UTC)
    write_site(tmp_path, now=now)
    url = database_url
    database = open_db(url)
    people = add_subscribers(database, SUBSCRIBERS, now=now)

    def start(*, workers: int = 2, password: str = "pw") -> subprocess.Popen[bytes]:
        config = tmp_path / "syndicate.toml"
        config.write_text(
            f'[site]\nbase_url = "https://news.example"\ntitle = "Worker Times"\n'
            f'[content]\nfolder = "{tmp_path / "content"}"\ncache = "{tmp_path / "cache" / "articles.pickle"}"\n'
            f'[database]\nurl = "{url}"\n'
            f'[mail]\nbackend = "smtp"\nfrom = "Worker Times <digest@news.example>"\ndomain = "news.example"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\nconnections = 4\nusername = "ann"\n'
            f'[outbox]\nworkers = {workers}\n'
            f'[logging]\nlevel = "INFO"\n',
            encoding="utf-8",
        )
        command = [sys.executable, "-m", "syndicate", "--config", str(config), "send", "--yes"]
        env = {**os.environ, **SECRET, "SYNDICATE_SMTP_PASSWORD": password}
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    yield start, server, database, people
    database.close()


def claims(database) -> Counter:
    """How many deliveries each process (pid from `claimed_by`) claimed."""
    with database.read() as connection:
        owners = connection.execute(select(deliveries.c.claimed_by)).scalars().all()
    return Counter(int(owner.split(":")[-2]) for owner in owners if owner)


def statuses(database) -> Counter:
    with database.read() as connection:
        return Counter(connection.execute(select(deliveries.c.status)).scalars().all())


def test_two_workers_send_every_digest_once_each_with_its_own_claims(send):
    start, server, database, people = send
    process = start()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()[-2000:]
    assert f"sent {SUBSCRIBERS}/{SUBSCRIBERS}" in out.decode()
    assert Counter(r.recipients[0] for r in server.received) == Counter(p.email for p in people)
    by_pid = claims(database)
    assert len(by_pid) == 2 and process.pid in by_pid, "the process itself and one worker"
    assert min(by_pid.values()) >= 100, f"the work is shared: {by_pid}"
    assert len({r.session for r in server.received}) == 4, "the 4 connections shared out, 2 a worker"


def test_one_worker_configured_sends_from_the_process_itself(send):
    start, server, database, people = send
    process = start(workers=1)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()[-2000:]
    assert Counter(r.recipients[0] for r in server.received) == Counter(p.email for p in people)
    assert claims(database) == Counter({process.pid: SUBSCRIBERS})


def test_a_worker_that_cannot_log_in_stops_the_send_with_the_reason_and_marks_nothing_sent(send):
    start, server, database, people = send
    process = start(password="wrong")
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "refused login for user 'ann'" in err.decode()
    assert server.received == []
    assert statuses(database) == Counter({"queued": SUBSCRIBERS})


@pytest.mark.slow  # two sends: ~4-5 s
def test_sigterm_stops_the_workers_after_their_messages_in_flight_and_the_next_send_finishes(send):
    start, server, database, people = send
    server.data_delay = 0.01
    process = start()
    deadline = time.monotonic() + 60
    while len(server.received) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert "stopped: run `syndicate send` again to finish" in err.decode()
    stopped = statuses(database)
    assert stopped["sending"] == 0 and stopped["queued"] > 0, stopped
    assert len(server.received) == stopped["sent"], "everything the server took is recorded sent"
    server.data_delay = 0.0
    again = start()
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()[-2000:]
    assert Counter(r.recipients[0] for r in server.received) == Counter(p.email for p in people)


@pytest.mark.timing
def test_workers_do_not_outlive_a_parent_killed_with_sigkill(send):
    start, server, database, people = send
    server.data_delay = 0.05  # the rest would take ~7 s: longer than the 3 s they get to stop
    process = start()
    deadline = time.monotonic() + 60
    while len(server.received) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    workers = set(claims(database)) - {process.pid}
    assert len(workers) == 1
    deadline = time.monotonic() + 3
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers), "the workers stop once their parent is gone"
    with database.read() as connection:
        left = connection.execute(select(deliveries.c.claimed_by).where(deliveries.c.status == "sending")).scalars().all()
    assert {int(owner.split(":")[-2]) for owner in left} <= {process.pid}, "a worker records its messages in flight"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "State:\tZ" not in status.read_text()

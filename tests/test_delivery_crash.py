"""Crash safety: `syndicate send --yes` for 2,000 subscribers, SIGKILLed at random moments and
restarted; in the end the server has every digest, and any copy received twice is the same
message (same Message-ID, same bytes) that was in flight at a kill. It sends with 2 worker
processes ([outbox] workers): a kill hits either the process started (its worker then stops by
itself) or the whole process group, worker included."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from syndicate.delivery._service import FLUSH_EVERY
from syndicate.mail.smtp import WINDOW_PER_CONNECTION
from syndicate.storage.schema import deliveries
from tests.outbox_support import SECRET, add_subscribers, open_db, write_site
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIBERS = 2000
KILLS = 4
WORKERS = 2
CONNECTIONS = 4
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.M)


@pytest.mark.slow
def test_killed_sends_restarted_deliver_every_digest_and_only_in_flight_ones_twice(tmp_path, smtp_server):
    server = smtp_server()
    now = datetime.now(UTC)
    write_site(tmp_path, now=now)
    url = f"sqlite:///{tmp_path / 'syndicate.db'}"
    config = tmp_path / "syndicate.toml"
    config.write_text(
        f'[site]\nbase_url = "https://news.example"\ntitle = "Crash Times"\n'
        f'[content]\nfolder = "{tmp_path / "content"}"\ncache = "{tmp_path / "cache" / "articles.pickle"}"\n'
        f'[database]\nurl = "{url}"\n'
        f'[mail]\nbackend = "smtp"\nfrom = "Crash Times <digest@news.example>"\ndomain = "news.example"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\nconnections = {CONNECTIONS}\n'
        f'[outbox]\nworkers = {WORKERS}\n'
        f'[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    database = open_db(url)
    people = add_subscribers(database, SUBSCRIBERS, now=now)
    database.close()
    command = [sys.executable, "-m", "syndicate", "--config", str(config), "send", "--yes"]
    env = {**os.environ, **SECRET}
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    kills = 0
    started: set[int] = set()
    for _ in range(KILLS):
        before = len(server.received)
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
        started.add(process.pid)
        # Kill once it is sending (at a random point after its first messages), or at start-up now and then.
        wait_for = rng.choice([0, 1, 50, 200, 400])
        deadline = time.monotonic() + 20
        while len(server.received) - before < wait_for and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.3))
        if process.poll() is None:
            if rng.random() < 0.5:
                process.send_signal(signal.SIGKILL)
            else:
                os.killpg(process.pid, signal.SIGKILL)  # the worker too: its messages in flight are lost as well
            kills += 1
        process.wait()
        _wait_for_the_group_to_end(process.pid)
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert kills >= 3
    database = open_db(url)
    with database.read() as connection:
        owners = connection.execute(select(deliveries.c.claimed_by)).scalars().all()
    database.close()
    assert {int(owner.split(":")[-2]) for owner in owners if owner} - started, "workers sent some of the digests"

    copies: dict[str, list[bytes]] = defaultdict(list)
    for message in server.received:
        copies[message.recipients[0]].append(message.data)
    assert set(copies) == {p.email for p in people}  # every digest arrived
    doubled = {address: datas for address, datas in copies.items() if len(datas) > 1}
    for address, datas in doubled.items():
        assert len({MESSAGE_ID.search(d).group(1) for d in datas}) == 1, address
        assert len(set(datas)) == 1, f"{address}: a resend differs from the first copy"
    # Only messages in flight at a kill come twice: per kill, at most one unrecorded flush (+ the backend's
    # window: its share of the connections each) in each process killed.
    assert sum(len(d) - 1 for d in doubled.values()) <= kills * WORKERS * (FLUSH_EVERY + WINDOW_PER_CONNECTION * CONNECTIONS)


def _wait_for_the_group_to_end(group: int, timeout: float = 20) -> None:
    """A worker left behind by a killed parent stops by itself (after its messages in flight)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise AssertionError(f"process group {group} still alive {timeout} s after the kill")

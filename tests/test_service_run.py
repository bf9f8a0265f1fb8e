"""`syndicate run` as a real process: what it prints, demo secrets, health, and a clean exit on SIGTERM."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
import urllib.request
from zoneinfo import ZoneInfo

import pytest

from syndicate.config import load_settings
from syndicate.service._lease import Lease
from syndicate.storage._database import open_database
from tests.service_helpers import REPO, RunningService, write_config


def get(url: str) -> tuple[int, bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read(), response.headers.get("Content-Type", "")


def test_run_serves_the_feeds_and_exits_0_on_sigterm_releasing_the_lease(tmp_path):
    config = write_config(tmp_path)
    with RunningService(config) as service:
        base = service.base_url
        service.wait_for("scheduler started jobs=")
        status, body, _ = get(f"{base}/healthz")
        health = json.loads(body)
        assert status == 200 and health["database"] == "ok"
        assert health["scheduler"]["state"] == "running" and health["scheduler"]["lease"]["this_process"]
        assert {job["id"] for job in health["scheduler"]["jobs"]} >= {"rebuild-feeds"}
        status, feed, _ = get(f"{base}/feeds/all.rss.xml")
        assert status == 200 and b"<rss" in feed

        assert service.terminate() == 0
        assert "received SIGTERM" in service.output
        assert "scheduler lease released" in service.output
        assert "Traceback" not in service.output

    settings = load_settings(config)
    with open_database(settings.database) as database:
        assert Lease(database, seconds=60).holder() is None  # a standby may start at once


@pytest.mark.slow  # two service processes, or a digest run, in a real process: ~5 s
def test_the_demo_prints_what_to_open_and_generates_its_secrets_once(tmp_path):
    config = write_config(tmp_path)
    with RunningService(config) as service:
        base = service.base_url
        printed = service.wait_for(r"Stop with Ctrl\+C") and "\n".join(service.stdout)
        token = service.wait_for(r"Authorization: Bearer (\S+)").group(1)
        assert service.terminate() == 0
    for expected in (f"{base}/feeds/all.rss.xml", f"{base}/feeds/index.opml", f"{base}/subscribe",
                     f"mail lands in {tmp_path / 'var' / 'outbox'}/"):
        assert expected in printed
    secrets = sorted((tmp_path / "var" / "secrets").iterdir())
    assert [p.name for p in secrets] == ["syndicate_admin_token", "syndicate_secret"]
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "var" / "secrets" / "syndicate_admin_token").read_text().strip() == token

    with RunningService(config) as again:
        assert again.wait_for(r"Authorization: Bearer (\S+)").group(1) == token  # reused, not regenerated
        assert again.terminate() == 0


def test_secrets_from_the_environment_are_used_and_nothing_is_written(tmp_path):
    config = write_config(tmp_path)
    env = {"SYNDICATE_SECRET": "s" * 32, "SYNDICATE_ADMIN_TOKEN": "t" * 32}
    with RunningService(config, env=env) as service:
        service.wait_for("syndicate is running on")
        assert service.terminate() == 0
    assert "Bearer" not in service.output  # a token the operator set is never printed
    assert not (tmp_path / "var" / "secrets").exists()


def test_without_generated_secrets_a_missing_secret_is_a_clear_error(tmp_path):
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("generate_missing_secrets = true", "generate_missing_secrets = false"))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SYNDICATE_")}
    result = subprocess.run([sys.executable, "-m", "syndicate", "--config", str(config), "run", "--port", "0"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "SYNDICATE_SECRET is not set" in result.stderr


def test_no_scheduler_serves_without_taking_the_lease(tmp_path):
    config = write_config(tmp_path)
    with RunningService(config, "--no-scheduler") as service:
        status, body, _ = get(f"{service.base_url}/healthz")
        assert status == 200 and json.loads(body)["scheduler"]["state"] == "disabled"
        assert service.terminate() == 0
    assert "scheduler lease acquired" not in service.output and "standing by" not in service.output


def test_sigterm_during_start_up_still_exits_0(tmp_path):
    config = write_config(tmp_path)
    with RunningService(config) as service:
        service.wait_for("database migrated")  # before the build, the bind and the server
        assert service.terminate() == 0
    assert "Traceback" not in service.output


def test_a_port_in_use_is_a_clear_error(tmp_path):
    import socket

    config = write_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SYNDICATE_")}
        result = subprocess.run([sys.executable, "-m", "syndicate", "--config", str(config), "run", "--port", str(port)],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_without_generated_secrets_a_missing_admin_token_only_locks_the_api(tmp_path):
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("generate_missing_secrets = true", "generate_missing_secrets = false"))
    with RunningService(config, env={"SYNDICATE_SECRET": "s" * 32}) as service:
        service.wait_for("syndicate is running on")
        assert service.terminate() == 0
    assert "Bearer" not in service.output
    assert not (tmp_path / "var" / "secrets").exists()


def test_ctrl_c_stops_cleanly_too(tmp_path):
    import signal

    config = write_config(tmp_path)
    with RunningService(config) as service:
        service.wait_for("scheduler started jobs=")
        service.process.send_signal(signal.SIGINT)
        assert service.process.wait(20) == 0
    assert "received SIGINT" in service.output and "scheduler lease released" in service.output
    assert "Traceback" not in service.output and "KeyboardInterrupt" not in service.output


@pytest.mark.slow  # two service processes, or a digest run, in a real process: ~5 s
def test_a_subscriber_whose_time_has_come_gets_a_digest_from_the_running_service(tmp_path):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from syndicate.storage.schema import subscribers
    from syndicate.subscribers._store import SubscriberDefaults, SubscriberStore, new_subscriber

    now = datetime.now(UTC)
    content = tmp_path / "content"
    content.mkdir()
    (content / "fresh.md").write_text(
        f"---\ntitle: A Fresh Story For The Digest\ndate: {(now - timedelta(hours=1)):%Y-%m-%dT%H:%M:%SZ}\n"
        "author: Ann Author\ncategories: [Main]\n---\nJust published.\n", encoding="utf-8")
    config = write_config(tmp_path, content=content)
    settings = load_settings(config)
    with open_database(settings.database) as database:
        store = SubscriberStore(database)
        new = new_subscriber("reader@example.org", categories=(), valid_categories=(), defaults=SubscriberDefaults(),
                             timezone="Europe/Paris", send_hour=8)
        subscriber = store.add(new, now=now - timedelta(days=3), confirmed=True)
        with database.write() as connection:  # their 08:00 came five minutes ago
            connection.execute(update(subscribers).where(subscribers.c.id == subscriber.id)
                               .values(next_send_at=now - timedelta(minutes=5)))

    outbox = tmp_path / "var" / "outbox"
    with RunningService(config) as service:
        service.wait_for("scheduler started jobs=")
        run_id = service.wait_for(r"run planned run=(\d+) kind=scheduled", timeout=20).group(1)
        service.wait_for(rf"job done job=digests run={run_id} ", timeout=20)  # the job's line names the run
        deadline = time.monotonic() + 20
        while not list(outbox.glob("**/*.eml")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.terminate() == 0
    messages = [path.read_text(errors="replace") for path in outbox.glob("**/*.eml")]
    assert len(messages) == 1, service.output
    assert "apscheduler" not in service.output  # its INFO chatter is dropped; our lines name the job
    assert "reader@example.org" in messages[0] and "A Fresh Story For The Digest" in messages[0]
    with open_database(settings.database) as database:
        following = SubscriberStore(database).details(subscriber.id).next_send_at
    assert following > now and following.astimezone(ZoneInfo("Europe/Paris")).hour == 8

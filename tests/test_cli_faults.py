"""Faults an operator meets on the command line (issue 12, point 4): each is one clear error and exit
code 2 (3 when every digest waits for a retry), never a traceback, never a delivery lost to a
configuration mistake."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syndicate.cli import main
from tests.outbox_support import add_subscribers
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)
from tests.test_cli_send import env  # noqa: F401  (fixture: a site, a real SMTP server, the CLI)

REPO = Path(__file__).resolve().parent.parent

def run_cli(config: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(["--config", str(config), *args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def write_config(tmp_path: Path, database_url: str, extra: str = "") -> Path:
    config = tmp_path / "syndicate.toml"
    config.write_text(
        f'[content]\nfolder = "{REPO / "content"}"\ncache = "{tmp_path / "cache" / "articles.pickle"}"\n'
        f'[database]\nurl = "{database_url}"\nbusy_timeout = 0.3\n[logging]\nlevel = "WARNING"\n{extra}',
        encoding="utf-8",
    )
    return config


@contextmanager
def locked(database_file: Path) -> Iterator[None]:
    """Another process holds the SQLite write lock until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.read()", str(database_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        holder.wait(10)


def test_unreachable_postgresql_is_one_clear_error_with_exit_2(tmp_path, capsys):
    config = write_config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/test")
    for command in (("db", "status"), ("subscribers", "list")):
        code, out, err = run_cli(config, capsys, *command)
        assert code == 2, (command, err)
        assert "Traceback" not in err
        assert err.startswith("error: database postgresql+psycopg://postgres@127.0.0.1:1/test is unreachable: "), err
        assert "hint: check that the database server runs" in err


def test_a_locked_sqlite_database_is_one_clear_error_and_nothing_half_written(tmp_path, capsys):
    database_file = tmp_path / "syndicate.db"
    config = write_config(tmp_path, f"sqlite:///{database_file}")
    assert run_cli(config, capsys, "subscribers", "list")[0] == 0  # created and migrated
    with locked(database_file):
        code, _, err = run_cli(config, capsys, "subscribers", "add", "ann@example.org", "--categories", "main")
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[0] == f"error: database sqlite:///{database_file} is locked by another process (waited 0.3 s)"
    assert "ann@example.org" not in run_cli(config, capsys, "subscribers", "list")[1]


# -- syndicate send: preconditions before a run is recorded; a distinct exit when all wait for a retry



def test_send_without_the_link_secret_records_nothing_and_fails_no_digest(env, monkeypatch):
    run, server, database = env
    people = add_subscribers(database, 3, now=datetime.now(UTC))
    monkeypatch.delenv("SYNDICATE_SECRET")
    code, out, err = run("send", "--yes")
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: signed links (confirm, unsubscribe, preferences): environment variable "
                          "SYNDICATE_SECRET is not set")
    code, out, _ = run("status")
    assert "No runs yet." in out and "No permanent failures." in out
    # The operator fixes the environment: every digest goes out, none was lost.
    monkeypatch.setenv("SYNDICATE_SECRET", "s" * 32)
    code, out, err = run("send", "--yes")
    assert code == 0, err
    assert sorted(r.recipients[0] for r in server.received) == sorted(p.email for p in people)


def test_send_with_a_broken_template_records_nothing(env, tmp_path):
    run, server, database = env
    add_subscribers(database, 2, now=datetime.now(UTC))
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "syndicate" / "templates" / "email", templates / "email")
    (templates / "email" / "digest.html.j2").write_text("{% if %}")
    config = next(tmp_path.glob("syndicate.toml"))
    config.write_text(config.read_text() + f'[email]\ntemplates = "{templates}"\n')
    code, out, err = run("send", "--yes")
    assert code == 2 and err.startswith("error: email template digest.html.j2: TemplateSyntaxError")
    assert "No runs yet." in run("status")[1] and server.received == []


def test_send_exits_3_when_every_digest_waits_for_a_retry(env):
    run, server, database = env
    people = add_subscribers(database, 3, now=datetime.now(UTC))
    for person in people:
        server.faults.rcpt(person.email, 451)
    code, out, err = run("send", "--yes")
    assert code == 3
    assert "3 will be retried later" in out
    assert "every digest is waiting for a retry: none was delivered" in err


def test_with_generated_secrets_every_command_signs_with_the_demo_secret(tmp_path, capsys, monkeypatch):
    """`make demo` generates the link secret under var/secrets/; a command in a second terminal (no
    SYNDICATE_SECRET in its environment) signs its links with that same secret."""
    from syndicate.config import load_settings
    from syndicate.service import service_secrets
    from syndicate.subscribers import LinkSigner
    from tests.web_helpers import link_in, mails

    monkeypatch.delenv("SYNDICATE_SECRET", raising=False)
    monkeypatch.delenv("SYNDICATE_ADMIN_TOKEN", raising=False)
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'syndicate.db'}",
                          f'[http]\ngenerate_missing_secrets = true\n[mail]\nbackend = "file"\nfolder = "{tmp_path / "outbox"}"\n')
    demo = {s.variable: s.value for s in service_secrets(load_settings(config), {})}  # what `make demo` made
    code, out, err = run_cli(config, capsys, "subscribers", "add", "ann@example.org", "--categories", "main")
    assert code == 0, err
    token = link_in(mails(tmp_path / "outbox")[0], "confirm").rsplit("/", 1)[1]
    assert LinkSigner(demo["SYNDICATE_SECRET"]).check("confirm", token) >= 1
    assert len(demo["SYNDICATE_SECRET"]) >= 32 and (tmp_path / "secrets" / "syndicate_secret").is_file()


# -- secrets and the SMTP login

def test_a_password_never_crosses_the_network_in_clear_unless_allowed():
    from syndicate.config import settings_from_mapping
    from syndicate.errors import ConfigError

    clear = {"mail": {"backend": "smtp"}, "smtp": {"host": "smtp.example.net", "security": "none", "username": "ann"}}
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(clear)
    assert str(caught.value) == (
        '<config>: [smtp] username: with security = "none" the password would cross the network in clear to '
        'smtp.example.net; use security = "starttls" or "tls" (or set allow_plaintext_auth = true if the network '
        'is private)')
    for host in ("127.0.0.1", "localhost", "::1"):
        assert settings_from_mapping({"smtp": {**clear["smtp"], "host": host}}).smtp.username == "ann"
    allowed = settings_from_mapping({"smtp": {**clear["smtp"], "allow_plaintext_auth": True}})
    assert allowed.smtp.username == "ann"
    assert settings_from_mapping({"smtp": {**clear["smtp"], "security": "starttls"}}).smtp.username == "ann"


def test_short_secrets_are_refused_with_a_clear_error(tmp_path, capsys, monkeypatch):
    from syndicate.errors import WeakSecretError
    from syndicate.wiring import Components
    from tests.web_helpers import ENVIRON, web_settings

    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'syndicate.db'}")
    monkeypatch.setenv("SYNDICATE_SECRET", "a")
    code, _, err = run_cli(config, capsys, "subscribers", "add", "ann@example.org", "--categories", "main")
    assert code == 2 and err.splitlines() == [
        "error: signed links (confirm, unsubscribe, preferences): environment variable SYNDICATE_SECRET holds "
        "1 bytes; at least 32 are needed",
        "hint: generate one: export SYNDICATE_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
    ]
    from syndicate.web.app import create_app

    settings = web_settings(tmp_path)
    with pytest.raises(WeakSecretError, match="SYNDICATE_ADMIN_TOKEN holds 1 bytes; at least 32"):
        create_app(Components(settings, environ={**ENVIRON, "SYNDICATE_ADMIN_TOKEN": "b"}))

"""`syndicate send` and `syndicate status` as an operator runs them, against a real SMTP server."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from syndicate.cli import main
from tests.outbox_support import SECRET, add_subscribers, open_db, write_site
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)


@pytest.fixture
def env(tmp_path, smtp_server, capsys, monkeypatch):
    """(run, server, database): `run(*args)` runs the CLI and returns (exit code, stdout, stderr)."""
    for name, value in SECRET.items():
        monkeypatch.setenv(name, value)
    server = smtp_server(strict=True)
    now = datetime.now(UTC)
    write_site(tmp_path, now=now)
    url = f"sqlite:///{tmp_path / 'syndicate.db'}"
    config = tmp_path / "syndicate.toml"
    config.write_text(
        f'[site]\nbase_url = "https://news.example"\ntitle = "Test Times"\n'
        f'[content]\nfolder = "{tmp_path / "content"}"\ncache = "{tmp_path / "cache" / "articles.pickle"}"\n'
        f'[database]\nurl = "{url}"\n'
        f'[mail]\nbackend = "smtp"\nfrom = "Test Times <digest@news.example>"\ndomain = "news.example"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\nconnections = 2\n'
        f'[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    database = open_db(url)

    def run(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(["--config", str(config), *args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run, server, database
    database.close()


def test_dry_run_lists_who_would_get_what_and_sends_nothing(env):
    run, server, database = env
    people = add_subscribers(database, 3, now=datetime.now(UTC))
    code, out, err = run("send", "--dry-run")
    assert code == 0, err
    assert out.splitlines() == [f"{p.email}\t6 articles" for p in people]
    assert "3 digests would be sent" in err
    assert server.received == []
    assert "No runs yet." in run("status")[1]


def test_without_yes_and_without_a_terminal_it_refuses_and_sends_nothing(env):
    run, server, database = env
    add_subscribers(database, 2, now=datetime.now(UTC))
    code, out, err = run("send")
    assert code != 0
    assert "refusing to send 2 digests without confirmation" in err and "--yes" in err
    assert server.received == []


def test_send_yes_sends_each_digest_once_and_status_shows_the_run(env):
    run, server, database = env
    people = add_subscribers(database, 4, now=datetime.now(UTC))
    code, out, err = run("send", "--yes")
    assert code == 0, err
    assert "sent 4/4" in out and "finished" in out
    assert sorted(r.recipients[0] for r in server.received) == sorted(p.email for p in people)
    code, out, err = run("send", "--yes")
    assert code == 0 and "0 digests to send" in err
    assert len(server.received) == 4
    code, out, _ = run("status")
    assert code == 0 and "manual" in out and "finished" in out and "No permanent failures." in out


def test_a_permanent_failure_makes_the_exit_status_1_and_status_shows_the_reason(env):
    run, server, database = env
    people = add_subscribers(database, 3, now=datetime.now(UTC))
    server.faults.data(people[1].email, 554)
    server.faults.rcpt(people[2].email, 451)
    code, out, err = run("send", "--yes")
    assert code == 1
    assert "1 failed permanently" in out and "1 will be retried later" in out
    code, out, _ = run("status")
    assert people[1].email in out and "554" in out and "message refused" in out
    assert "Waiting for a retry" in out and people[2].email in out


def test_to_mails_one_test_copy_and_changes_nothing(env):
    run, server, database = env
    people = add_subscribers(database, 2, now=datetime.now(UTC))
    code, out, err = run("send", "--subscriber", people[0].email, "--to", "editor@example.org")
    assert code == 0, err
    [copy] = server.received
    assert copy.recipients == ("editor@example.org",)
    assert b"To: Reader 0 <editor@example.org>" in copy.data and b"/unsubscribe/preview" in copy.data
    assert "No runs yet." in run("status")[1]
    code, out, err = run("send", "--category", "sport", "--to", "editor@example.org")
    assert code == 0 and len(server.received) == 2


def test_a_test_copy_address_is_checked_and_its_domain_idna_encoded(env):
    run, server, database = env
    add_subscribers(database, 1, now=datetime.now(UTC))
    code, out, err = run("send", "--category", "sport", "--to", "Editor@München.de")
    assert code == 0, err
    [copy] = server.received
    assert copy.recipients == ("Editor@xn--mnchen-3ya.de",) and b"To: Editor@xn--mnchen-3ya.de" in copy.data
    code, out, err = run("send", "--category", "sport", "--to", "editor@")
    assert code != 0 and "test copy address: 'editor@' is not a valid address" in err
    assert len(server.received) == 1


def test_subscriber_and_category_filters_send_only_to_those_who_match(env):
    run, server, database = env
    city = add_subscribers(database, 2, categories=("city",), now=datetime.now(UTC))
    add_subscribers(database, 2, categories=("sport",), now=datetime.now(UTC), start=10)
    assert run("send", "--yes", "--category", "city")[0] == 0
    assert sorted(r.recipients[0] for r in server.received) == sorted(p.email for p in city)
    code, out, err = run("send", "--yes", "--subscriber", "nobody@example.org")
    assert code != 0 and "no subscriber with address nobody@example.org" in err


def test_preview_of_a_stored_subscriber_shows_their_digest_with_their_signed_links(env):
    run, server, database = env
    from syndicate.subscribers._tokens import LinkSigner
    [reader] = add_subscribers(database, 1, categories=("science",), now=datetime.now(UTC))
    code, out, err = run("preview", "--subscriber", reader.email, "--format", "eml")
    assert code == 0, err
    message = email.message_from_string(out, policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == reader.email
    assert message["Subject"] == "Test Times: 2 new articles in science"
    token = message["List-Unsubscribe"].split("/unsubscribe/")[1].rstrip(">")
    assert LinkSigner(SECRET["SYNDICATE_SECRET"]).check("unsubscribe", token) == reader.id
    assert server.received == [] and "No runs yet." in run("status")[1]

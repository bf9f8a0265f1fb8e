"""Issue 17 from the command line: quiet logs, plain output when piped, --json, prompts that never
block, requeueing a failed digest, and the dry run agreeing with the send (real SMTP server)."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from syndicate.cli import main
from syndicate.storage.schema import audit_log, deliveries
from tests.outbox_support import SECRET, add_subscribers, open_db, write_site
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)


@pytest.fixture
def env(tmp_path, smtp_server, capsys, monkeypatch):
    """(run, server, database, config): the CLI on a config with no [logging] level (the default)."""
    for name, value in SECRET.items():
        monkeypatch.setenv(name, value)
    server = smtp_server(strict=True)
    write_site(tmp_path, now=datetime.now(UTC))
    url = f"sqlite:///{tmp_path / 'syndicate.db'}"
    config = tmp_path / "syndicate.toml"
    config.write_text(
        f'[site]\nbase_url = "https://news.example"\ntitle = "Test Times"\n'
        f'[content]\nfolder = "{tmp_path / "content"}"\ncache = "{tmp_path / "cache" / "articles.pickle"}"\n'
        f'[database]\nurl = "{url}"\n'
        f'[mail]\nbackend = "smtp"\nfrom = "Test Times <digest@news.example>"\ndomain = "news.example"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\nconnections = 1\n'
        f'[outbox]\nmax_attempts = 1\n',
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

    yield run, server, database, config
    database.close()


def test_logs_stay_off_the_output_unless_asked(env):
    run, server, database, _ = env
    add_subscribers(database, 2, now=datetime.now(UTC))
    code, out, err = run("send", "--yes")
    assert code == 0, err
    assert " INFO " not in out + err  # default: WARNING, though the config file's [logging] says nothing
    assert "run 1 finished: sent 2/2" in out
    code, out, err = run("-v", "status")
    assert code == 0 and " INFO " not in out  # log lines never reach stdout
    code, out, err = run("-v", "send", "--yes")
    assert " INFO syndicate." in err and " INFO " not in out
    code, out, err = run("-vv", "subscribers", "show", "reader0@example.org")
    assert " DEBUG " in err or " INFO " in err or err == ""  # at most log lines on stderr
    assert out.startswith("email:")


def test_status_and_subscribers_as_json_for_scripts(env):
    run, server, database, _ = env
    add_subscribers(database, 2, now=datetime.now(UTC))
    run("send", "--yes")
    code, out, _ = run("status", "--json")
    status = json.loads(out)
    assert code == 0 and status["runs"][0]["sent"] == 2 and status["failures"] == []
    listed = json.loads(run("subscribers", "list", "--json")[1])
    assert [s["email"] for s in listed] == ["reader0@example.org", "reader1@example.org"]
    shown = json.loads(run("subscribers", "show", "reader1@example.org", "--json")[1])
    assert shown["status"] == "active" and shown["source"] == "import" and shown["confirmed_at"]


def test_list_and_show_say_the_same_of_no_category(env):
    run, *_ = env
    assert run("subscribers", "add", "ann@example.org", "--categories", "", "--confirmed")[0] == 0
    _, out, _ = run("subscribers", "list")
    assert out.splitlines()[1].split("\t")[-1] == "(all)"
    _, out, _ = run("subscribers", "show", "ann@example.org")
    assert "categories:   (all)" in out


def test_set_says_unchanged_when_nothing_changed_and_refuses_no_option(env):
    run, *_ = env
    run("subscribers", "add", "ann@example.org", "--categories", "city", "--confirmed", "--send-hour", "7")
    code, out, err = run("subscribers", "set", "ann@example.org")
    assert code == 2 and "nothing to change" in err and "updated" not in out
    code, out, _ = run("subscribers", "set", "ann@example.org", "--send-hour", "7")
    assert code == 0 and out.startswith("unchanged ann@example.org")
    code, out, _ = run("subscribers", "set", "ann@example.org", "--send-hour", "9")
    assert code == 0 and out.startswith("updated ann@example.org: daily at 09:00")


def test_remove_without_a_terminal_refuses_instead_of_prompting(env):
    run, *_ = env
    run("subscribers", "add", "ann@example.org", "--categories", "city", "--confirmed")
    code, out, err = run("subscribers", "remove", "ann@example.org")
    assert code != 0 and "refusing to delete ann@example.org without confirmation" in err and "--yes" in err
    assert run("subscribers", "show", "ann@example.org")[0] == 0  # still there
    assert run("subscribers", "remove", "ann@example.org", "--yes")[1].strip() == "ann@example.org: removed"


def test_test_copy_reply_reads_cleanly(env):
    run, server, database, _ = env
    add_subscribers(database, 1, now=datetime.now(UTC))
    code, out, err = run("send", "--subscriber", "reader0@example.org", "--to", "me@example.org")
    assert code == 0, err
    assert out.startswith("test copy to me@example.org: sent (250 ") and "(- " not in out


def test_requeue_sends_a_failed_digest_again_with_its_message_id(env):
    run, server, database, _ = env
    people = add_subscribers(database, 3, now=datetime.now(UTC))
    server.faults.rcpt(people[1].email, 550, times=1)  # refused once, for good as far as we know
    code, out, err = run("send", "--yes")
    assert code == 1 and "1 failed permanently" in out
    assert sorted(m.recipients[0] for m in server.received) == [people[0].email, people[2].email]
    with database.read() as connection:
        failed = connection.execute(select(deliveries.c.id, deliveries.c.message_id).where(deliveries.c.status == "failed")).one()
    # Before: the dry run must not promise a digest the send will not record.
    code, out, err = run("send", "--dry-run")
    assert out == "" and f"not sent: {people[1].email}: this digest failed (delivery {failed.id})" in err
    assert "0 digests would be sent" in err
    code, out, err = run("send", "--yes")
    assert len(server.received) == 2  # and the send indeed records nothing for them

    code, out, err = run("deliveries", "failures")
    assert code == 0 and "550" in out.splitlines()[1]
    code, out, err = run("deliveries", "requeue", "--id", str(failed.id), "--reason", "mailbox fixed", "--send")
    assert code == 0, err
    assert out.splitlines() == ["requeued 1 delivery of run 1", "run 1 finished: sent 3/3, retrying 0, failed 0"]
    again = [m for m in server.received if m.recipients == (people[1].email,)]
    assert len(again) == 1 and email.message_from_bytes(again[0].data)["Message-ID"] == failed.message_id
    with database.read() as connection:
        row = connection.execute(select(deliveries.c.status, deliveries.c.attempts).where(deliveries.c.id == failed.id)).one()
        audit = connection.execute(select(audit_log.c.actor, audit_log.c.action, audit_log.c.detail)).all()
    assert tuple(row) == ("sent", 1)
    assert [tuple(a) for a in audit] == [("cli", "delivery.requeue", "mailbox fixed")]
    # Requeued once, sent once: a second requeue finds nothing failed.
    code, out, _ = run("deliveries", "requeue", "--id", str(failed.id))
    assert out.strip() == "requeued 0 deliveries"
    assert len(server.received) == 3


def test_requeue_leaves_an_unsubscribed_subscribers_digest_failed(env):
    run, server, database, _ = env
    people = add_subscribers(database, 2, now=datetime.now(UTC))
    server.faults.rcpt(people[0].email, 550, times=1)
    run("send", "--yes")
    run("subscribers", "unsubscribe", people[0].email)
    code, out, err = run("deliveries", "requeue", "--run", "1", "--send")
    assert "left failed: delivery" in err and "the subscriber is unsubscribed" in err
    assert out.strip() == "requeued 0 deliveries"
    assert [m.recipients for m in server.received] == [(people[1].email,)]

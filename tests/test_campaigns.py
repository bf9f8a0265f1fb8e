"""Campaigns from the command line, through the outbox to a real SMTP server: once per subscriber,
only to active subscribers of the chosen categories, with the digests' headers and links."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from syndicate.config import load_settings
from syndicate.storage.schema import subscribers
from syndicate.subscribers import SubscriberStore
from syndicate.wiring import Components
from tests.outbox_support import add_subscribers
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)
from tests.test_cli_operators import env  # noqa: F401  (fixture)


def _body(tmp_path, text="We are **moving** to a new domain: <https://new.example>.\n\n<script>alert(1)</script>\n"):
    path = tmp_path / "moving.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_campaign_reaches_each_active_subscriber_of_its_categories_once(env, tmp_path):
    run, server, database, _ = env
    now = datetime.now(UTC)
    city = add_subscribers(database, 2, categories=("city",), now=now)
    science = add_subscribers(database, 1, categories=("science",), now=now, start=10)
    everything = add_subscribers(database, 1, categories=(), now=now, start=20)  # no category chosen: follows all
    gone = add_subscribers(database, 1, categories=("city",), now=now, start=30)
    SubscriberStore(database).unsubscribe(gone[0].id, now)
    with database.read() as connection:
        marks_before = dict(connection.execute(select(subscribers.c.id, subscribers.c.high_water)).all())

    code, out, err = run("campaigns", "create", "--subject", "We are moving", "--body", str(_body(tmp_path)),
                         "--categories", "city")
    assert code == 0, err
    assert out.strip() == "campaign 1 (draft): 'We are moving' to 3 active subscribers of city"
    code, html, _ = run("campaigns", "preview", "1")
    assert "<strong>moving</strong>" in html and "<script>" not in html and "/unsubscribe/preview" in html
    code, out, err = run("campaigns", "test", "1", "--to", "editor@example.org")
    assert code == 0 and out.startswith("test copy to editor@example.org: sent (250"), err
    assert [m.recipients for m in server.received] == [("editor@example.org",)]

    code, out, err = run("campaigns", "send", "1")
    assert code != 0 and "refusing to send campaign 1 to 3 subscribers without confirmation" in err
    code, out, err = run("campaigns", "send", "1", "--yes")
    assert code == 0, err
    assert out.strip() == "campaign 1 sent (run 1): sent 3/3, retrying 0, failed 0, skipped 0"
    got = sorted(m.recipients[0] for m in server.received[1:])
    assert got == sorted([city[0].email, city[1].email, everything[0].email])
    message = email.message_from_bytes(server.received[1].data, policy=email.policy.default)
    assert message["Subject"] == "We are moving" and message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith("<https://news.example/unsubscribe/")
    assert message["Message-ID"].startswith("<campaign.1.")
    assert science[0].email not in got and gone[0].email not in got

    # Once: a second send is refused, and nothing more arrives.
    code, out, err = run("campaigns", "send", "1", "--yes")
    assert code == 2 and "campaign 1 was already sent (run 1)" in err
    assert len(server.received) == 4
    code, out, _ = run("campaigns", "list")
    assert out.splitlines()[1].split("\t")[:3] == ["1", "sent", "We are moving"] and out.splitlines()[1].endswith("3\t0\t3")
    # A campaign moves no high-water mark, and the digests still go out as before.
    with database.read() as connection:
        assert dict(connection.execute(select(subscribers.c.id, subscribers.c.high_water)).all()) == marks_before
    code, out, err = run("send", "--yes", "--category", "city")
    assert code == 0 and "sent 3/3" in out, out + err


def test_a_campaign_failed_once_is_requeued_and_arrives_once(env, tmp_path):
    run, server, database, _ = env
    people = add_subscribers(database, 3, categories=("city",), now=datetime.now(UTC))
    server.faults.rcpt(people[1].email, 550, times=1)
    run("campaigns", "create", "--subject", "Hello", "--body", str(_body(tmp_path, "Hi.\n")))
    code, out, _ = run("campaigns", "send", "1", "--yes")
    assert code == 1 and "sent 2/3" in out and "failed 1" in out
    code, out, err = run("deliveries", "requeue", "--run", "1", "--send")
    assert code == 0 and "requeued 1 delivery of run 1" in out, err
    got = [m.recipients[0] for m in server.received]
    assert sorted(got) == sorted(p.email for p in people)  # each exactly once


def test_bad_campaigns_are_refused_with_the_field(env, tmp_path):
    run, *_ = env
    code, _, err = run("campaigns", "create", "--subject", "  ", "--body", str(_body(tmp_path)))
    assert code == 2 and "subject: is empty" in err
    code, _, err = run("campaigns", "create", "--subject", "Hi", "--body", str(_body(tmp_path)), "--categories", "knitting")
    assert code == 2 and "categories: unknown knitting" in err
    code, _, err = run("campaigns", "create", "--subject", "Hi", "--body", str(_body(tmp_path, "Hi\x00there.\n")))
    assert code == 2 and "body: contains a character no email can carry (U+0000)" in err
    code, _, err = run("campaigns", "create", "--subject", "Hi \udcff", "--body", str(_body(tmp_path)))
    assert code == 2 and "subject: contains a character no email can carry (U+DCFF)" in err
    code, _, err = run("campaigns", "create", "--subject", "Hi", "--body", str(_body(tmp_path)), "--at", "tomorrow")
    assert code == 2 and "not an ISO 8601 time" in err
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="minutes")
    code, out, err = run("campaigns", "create", "--subject", "Hi", "--body", str(_body(tmp_path)), "--at", later)
    assert code == 0 and "(scheduled for " in out, err


def test_a_scheduled_campaign_goes_out_when_due_once(env, tmp_path):
    run, server, database, config = env
    people = add_subscribers(database, 2, categories=("city",), now=datetime.now(UTC))
    soon = datetime.now(UTC) + timedelta(minutes=5)
    code, out, err = run("campaigns", "create", "--subject", "Later", "--body", str(_body(tmp_path, "Hi.\n")),
                         "--at", soon.isoformat())
    assert code == 0, err
    components = Components(load_settings(config))
    try:
        campaigns = components.campaigns
        assert campaigns.send_due(datetime.now(UTC)) == []  # not yet
        assert server.received == []
        sent = campaigns.send_due(soon + timedelta(seconds=1))  # the service's job, a minute later
        assert [(c.id, c.status.value, c.counts["sent"]) for c in sent] == [(1, "sent", 2)]
        assert campaigns.send_due(soon + timedelta(minutes=2)) == []  # never twice
    finally:
        components.close()
    assert sorted(m.recipients[0] for m in server.received) == sorted(p.email for p in people)


def test_an_announcement_opens_with_its_subject_escaped_not_a_greeting(env, tmp_path):
    run, server, database, _ = env
    add_subscribers(database, 1, categories=("city",), now=datetime.now(UTC))
    code, out, err = run("campaigns", "create", "--subject", "Moving <soon> & fast", "--body", str(_body(tmp_path, "Hi.\n")),
                         "--variant", "announcement")
    assert code == 0, err
    _, html, _ = run("campaigns", "preview", "1")
    assert "Moving &lt;soon&gt; &amp; fast</p>" in html and "Hello" not in html
    _, text, _ = run("campaigns", "preview", "1", "--text")
    assert "Moving <soon> & fast\n--------------------" in text and "Hello" not in text
    assert run("campaigns", "send", "1", "--yes")[0] == 0
    message = email.message_from_bytes(server.received[0].data, policy=email.policy.default)
    assert "Moving <soon> & fast" in message.get_body(("plain",)).get_content()
    code, _, err = run("campaigns", "create", "--subject", "x", "--body", str(_body(tmp_path)), "--variant", "poster")
    assert code == 2 and "'poster' is not one of 'letter', 'announcement'" in err


def test_a_campaign_interrupted_after_planning_is_finished_by_the_next_send(env, tmp_path):
    run, server, database, config = env
    people = add_subscribers(database, 2, categories=("city",), now=datetime.now(UTC))
    run("campaigns", "create", "--subject", "Hello", "--body", str(_body(tmp_path, "Hi.\n")))
    components = Components(load_settings(config))
    try:
        components.campaigns.plan(1, now=datetime.now(UTC))  # planned, then the process "stopped"
    finally:
        components.close()
    assert server.received == [] and run("campaigns", "list")[1].splitlines()[1].split("\t")[1] == "sending"
    code, out, err = run("send", "--yes")  # resumes every run with queued deliveries
    assert code == 0 and "resuming run 1" in err, out + err
    got = [m.recipients[0] for m in server.received
           if email.message_from_bytes(m.data, policy=email.policy.default)["Subject"] == "Hello"]
    assert sorted(got) == sorted(p.email for p in people)  # (their digests went out too, in run 2)
    assert run("campaigns", "list")[1].splitlines()[1].split("\t")[1] == "sent"

"""Bounces on real parts: digests sent through aiosmtpd with VERP, their bounces piped back through
`syndicate bounces receive`, the policy (hard, soft, complaint, unsubscribe), reverting a change."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from syndicate.bounces import AddressTokens, BounceEvents, BouncePolicy, BounceProcessor
from syndicate.subscribers import SubscriberStatus, SubscriberStore, SuppressionList
from tests.bounce_support import arf, dsn, env, sent_to  # noqa: F401  (fixture)
from tests.outbox_support import SECRET, add_subscribers
from tests.site_helpers import write_article
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)

TOKENS = AddressTokens(SECRET["SYNDICATE_SECRET"], return_path="bounce+{token}@news.example",
                       unsubscribe="unsubscribe+{token}@news.example")
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_digests_carry_a_verp_sender_and_two_piped_bounces_bounce_exactly_those_two(env, tmp_path):
    run, server, database, _ = env
    people = add_subscribers(database, 4, now=datetime.now(UTC))
    code, out, err = run("send", "--yes")
    assert code == 0, err
    senders = {}
    for person in people:
        sender, message = sent_to(server, person.email)
        ref = TOKENS.in_address(sender)
        assert sender.startswith("bounce+d") and sender.endswith("@news.example") and ref is not None
        senders[person.email] = sender
        mailto = message["List-Unsubscribe"].split("mailto:")[1].split("?")[0]
        assert TOKENS.in_address(mailto).subscriber_id == person.id, "the mailto names its own subscriber"

    for person in people[:2]:
        code, out, err = run("bounces", "receive", stdin=dsn(senders[person.email], person.email))
        assert code == 0, err
        assert out.startswith("bounced kind=hard")
    store = SubscriberStore(database)
    assert [store.get(p.id).status for p in people] == [SubscriberStatus.BOUNCED] * 2 + [SubscriberStatus.ACTIVE] * 2
    assert all(SuppressionList(database).is_suppressed(p.email) for p in people[:2])

    code, out, _ = run("bounces", "list", "--kind", "hard", "--since", "1d")
    assert out.count("hard") == 2 and people[0].email in out and people[1].email in out
    event_id = out.splitlines()[1].split()[0]
    code, out, _ = run("bounces", "list", "--kind", "hard", "--json")
    listed = json.loads(out)
    assert sorted(e["recipient"] for e in listed) == sorted([people[0].email, people[1].email])
    assert {e["kind"] for e in listed} == {"hard"} and all("raw" not in e for e in listed)
    code, out, _ = run("bounces", "show", event_id)
    assert "Undelivered Mail Returned to Sender" in out and "Status: 5.1.1" in out, "the raw message is kept"
    code, out, _ = run("subscribers", "show", people[0].email)
    assert "active -> bounced" in out and "1 hard bounce" in out

    write_article(tmp_path / "content", "fresh", title="Fresh news", categories=["city"],
                  date=(datetime.now(UTC) - timedelta(minutes=5)).isoformat())
    before = len(server.received)
    code, _, err = run("send", "--yes")
    assert code == 0, err
    again = Counter(r.recipients[0] for r in server.received[before:])
    assert again == Counter(p.email for p in people[2:]), "the bounced two get nothing more"


def test_the_same_bounce_piped_twice_is_one_event(env):
    run, server, database, _ = env
    [person] = add_subscribers(database, 1, now=datetime.now(UTC))
    run("send", "--yes")
    sender, _ = sent_to(server, person.email)
    assert run("bounces", "receive", stdin=dsn(sender, person.email))[0] == 0
    code, out, _ = run("bounces", "receive", stdin=dsn(sender, person.email))
    assert code == 0 and out.startswith("duplicate")
    assert run("bounces", "list")[1].count("hard") == 1


def test_mail_to_the_unsubscribe_address_unsubscribes_whatever_the_body_says(env):
    run, server, database, _ = env
    people = add_subscribers(database, 2, now=datetime.now(UTC))
    run("send", "--yes")
    _, message = sent_to(server, people[0].email)
    mailto = message["List-Unsubscribe"].split("mailto:")[1].split("?")[0]
    request = (f"From: {people[0].email}\nTo: {mailto}\nSubject: Re: keep me subscribed please\n\n"
               f"Please keep me subscribed!\n").encode()
    code, out, err = run("bounces", "receive", "--recipient", mailto, stdin=request)
    assert (code, out.split()[0]) == (0, "unsubscribed"), err
    store = SubscriberStore(database)
    assert store.get(people[0].id).status is SubscriberStatus.UNSUBSCRIBED
    assert store.get(people[1].id).status is SubscriberStatus.ACTIVE
    assert not SuppressionList(database).is_suppressed(people[0].email), "an unsubscribe may sign up again"


def test_a_bounce_with_a_forged_token_changes_nobody_but_is_kept(env):
    run, server, database, _ = env
    [person] = add_subscribers(database, 1, now=datetime.now(UTC))
    forged = "bounce+d1-aaaaaaaaaa@news.example"
    code, out, _ = run("bounces", "receive", stdin=dsn(forged, person.email))
    assert code == 0 and out.startswith("recorded") and "subscriber=-" in out
    assert SubscriberStore(database).get(person.id).status is SubscriberStatus.ACTIVE
    assert not SuppressionList(database).is_suppressed(person.email)


def test_unrelated_mail_given_to_the_pipe_is_kept_as_ignored_and_changes_nothing(env):
    run, server, database, _ = env
    [person] = add_subscribers(database, 1, now=datetime.now(UTC))
    code, out, _ = run("bounces", "receive", stdin=f"From: {person.email}\nSubject: thanks\n\nGreat digest!\n".encode())
    assert code == 0 and out.startswith("recorded kind=ignored")
    assert SubscriberStore(database).get(person.id).status is SubscriberStatus.ACTIVE


@pytest.mark.slow  # the pipe in three real processes: ~4 s
def test_the_pipe_as_an_mta_runs_it_exit_0_when_taken_75_when_the_database_is_unreachable(env, tmp_path):
    run, server, database, config = env
    [person] = add_subscribers(database, 1, now=datetime.now(UTC))
    raw = dsn(f"bounce+{TOKENS.token('s', person.id)}@news.example", person.email)
    environ = {"SYNDICATE_SECRET": SECRET["SYNDICATE_SECRET"], "PATH": "/usr/bin:/bin"}
    taken = subprocess.run([sys.executable, "-m", "syndicate", "--config", str(config), "bounces", "receive"],
                           input=raw, capture_output=True, env=environ, timeout=60)
    assert taken.returncode == 0, taken.stderr
    assert SubscriberStore(database).get(person.id).status is SubscriberStatus.BOUNCED

    broken = tmp_path / "broken.toml"
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    broken.write_text(config.read_text().replace(f"sqlite:///{tmp_path / 'syndicate.db'}", f"sqlite:///{blocker / 'db.sqlite'}"))
    later = subprocess.run([sys.executable, "-m", "syndicate", "--config", str(broken), "bounces", "receive"],
                           input=raw, capture_output=True, env=environ, timeout=60)
    assert later.returncode == 75, later.stderr
    assert b"try again" in later.stderr


# -- the policy, straight through the processor (SQLite and PostgreSQL)

@pytest.fixture
def processor(database):
    return BounceProcessor(database, SubscriberStore(database), tokens=None,
                           policy=BouncePolicy(hard_limit=1, soft_limit=3, soft_window=timedelta(days=14)))


def test_soft_bounces_bounce_a_subscriber_only_at_the_limit_within_the_window(database, processor):
    [person] = add_subscribers(database, 1)
    store = SubscriberStore(database)
    full = lambda n: dsn("bounce@news.example", person.email, "4.2.2", diagnostic=f"mailbox full {n}")  # noqa: E731
    assert processor.receive_message(full(1), source="imap", now=NOW - timedelta(days=20)).action == "recorded"
    assert processor.receive_message(full(2), source="imap", now=NOW).action == "recorded"
    assert processor.receive_message(full(3), source="imap", now=NOW + timedelta(days=1)).action == "recorded", \
        "the first one is outside the 14-day window"
    assert store.get(person.id).status is SubscriberStatus.ACTIVE
    outcome = processor.receive_message(full(4), source="imap", now=NOW + timedelta(days=2))
    assert (outcome.action, outcome.kind, outcome.suppressed) == ("bounced", "soft", False)
    assert store.get(person.id).status is SubscriberStatus.BOUNCED


def test_a_complaint_unsubscribes_and_suppresses_and_an_operator_can_revert_it(database, processor):
    [person] = add_subscribers(database, 1)
    store = SubscriberStore(database)
    outcome = processor.receive_message(arf("bounce@news.example", person.email), source="imap", now=NOW)
    assert (outcome.action, outcome.kind, outcome.suppressed) == ("unsubscribed", "complaint", True)
    assert store.get(person.id).status is SubscriberStatus.UNSUBSCRIBED
    assert SuppressionList(database).is_suppressed(person.email)
    [change] = store.changes(person.id)
    assert (change.from_status, change.to_status, change.event_id) == ("active", "unsubscribed", outcome.event_id)

    processor.revert(change.id, NOW + timedelta(hours=1))
    again = store.details(person.id)
    assert again.subscriber.status is SubscriberStatus.ACTIVE and again.next_send_at > NOW
    assert not SuppressionList(database).is_suppressed(person.email)
    assert store.changes(person.id)[0].reverted_at is not None
    with pytest.raises(Exception, match="already reverted"):
        processor.revert(change.id, NOW + timedelta(hours=2))


def test_a_hard_limit_of_two_waits_for_the_second_hard_bounce(database):
    [person] = add_subscribers(database, 1)
    processor = BounceProcessor(database, SubscriberStore(database), tokens=None, policy=BouncePolicy(hard_limit=2))
    first = processor.receive_message(dsn("b@news.example", person.email, diagnostic="one"), source="imap", now=NOW)
    second = processor.receive_message(dsn("b@news.example", person.email, diagnostic="two"), source="imap", now=NOW)
    assert (first.action, second.action) == ("recorded", "bounced")


def test_auto_replies_and_delay_warnings_change_nobody(database, processor):
    [person] = add_subscribers(database, 1)
    delayed = dsn("b@news.example", person.email, "4.4.1", action="delayed")
    vacation = f"From: {person.email}\nAuto-Submitted: auto-replied\nSubject: Out of office\n\nAway.\n".encode()
    assert processor.receive_message(delayed, source="imap", now=NOW).kind == "ignored"
    assert processor.receive_message(vacation, source="imap", now=NOW).kind == "ignored"
    assert SubscriberStore(database).get(person.id).status is SubscriberStatus.ACTIVE


def test_status_shows_bounce_and_complaint_rates_with_a_warning_past_the_thresholds(env):
    run, server, database, _ = env
    people = add_subscribers(database, 4, now=datetime.now(UTC))
    run("send", "--yes")
    code, out, _ = run("status")
    assert "Bounces and complaints" in out and "warning:" not in out
    sender, _ = sent_to(server, people[0].email)
    assert run("bounces", "receive", stdin=dsn(sender, people[0].email))[0] == 0
    sender, _ = sent_to(server, people[1].email)
    assert run("bounces", "receive", stdin=arf(sender, people[1].email))[0] == 0
    code, out, _ = run("status")
    assert code == 0
    row = next(line for line in out.splitlines() if line.strip().startswith("│ last run") or line.strip().startswith("last run"))
    assert "25.00%" in row, row
    assert "warning: bounce rate over the last run is 25.00% (above 2.00%)" in out
    assert "warning: complaint rate over the last run is 25.00% (above 0.10%)" in out


def test_a_nul_in_a_bounce_s_diagnostic_or_address_is_recorded_without_it(database, processor):
    """PostgreSQL's text cannot hold a NUL: one in a bounce must not fail the event (the mailbox would
    stop at that message for good)."""
    [person] = add_subscribers(database, 1)
    raw = dsn("bounce@news.example", person.email, "5.1.1", diagnostic="no such user\x00here")
    outcome = processor.receive_message(raw, source="imap", now=NOW)
    assert outcome.action == "bounced"
    [event] = BounceEvents(database).list()
    assert "\x00" not in event.diagnostic and "no such user" in event.diagnostic
    assert SubscriberStore(database).get(person.id).status.value == "bounced"

"""What the operators' features ask of the database, on SQLite and PostgreSQL: search with keyset
pages, counts, requeue rules, campaign deliveries once per subscriber, console sessions, the audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, update

from syndicate.audit import AuditLog
from syndicate.config import OutboxSettings
from syndicate.delivery import Outbox
from syndicate.delivery._outbox import PlannedDelivery, since_key
from syndicate.storage.schema import campaigns, deliveries
from syndicate.subscribers import Filter, SubscriberDefaults, SubscriberStore, new_subscriber
from syndicate.web.admin_session import AdminSessions

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _people(database, specs):
    store = SubscriberStore(database)
    found = []
    for email, name, categories in specs:
        new = new_subscriber(email, name=name, categories=categories, valid_categories=["a", "b"], defaults=SubscriberDefaults())
        found.append(store.add(new, now=NOW, confirmed=True))
    return store, found


def test_search_pages_by_key_and_escapes_like(database):
    store, people = _people(database, [(f"user{i}@example.org", f"User {i}", ["a"]) for i in range(5)]
                            + [("odd_one@example.org", "100% Sure", ["b"]), ("oddXone@example.org", None, [])])
    page, after = store.search("user", after=0, limit=2)
    assert [p.subscriber.email for p in page] == ["user0@example.org", "user1@example.org"] and after == people[1].id
    page, after = store.search("USER", after=after, limit=2)
    assert [p.subscriber.email for p in page] == ["user2@example.org", "user3@example.org"]
    page, after = store.search("user", after=after, limit=2)
    assert [p.subscriber.email for p in page] == ["user4@example.org"] and after is None
    assert [p.subscriber.email for p in store.search("odd_")[0]] == ["odd_one@example.org"]  # _ is literal
    assert [p.subscriber.email for p in store.search("100%")[0]] == ["odd_one@example.org"]
    assert [p.subscriber.email for p in store.search("", Filter(category="b"))[0]] == ["odd_one@example.org"]
    assert store.counts_by_category() == {"a": 5, "b": 1, "": 1}
    assert (store.count_following(["b"]), store.count_following(["a", "b"]), store.count_following([])) == (2, 7, 7)
    assert len(store.next_due(3)) == 3


def test_requeue_and_held_back(database):
    store, (ann, bob) = _people(database, [("ann@example.org", None, ["a"]), ("bob@example.org", None, ["a"])])
    outbox = Outbox(database, OutboxSettings())
    run = outbox.start_run("manual", {}, NOW)
    planned = [PlannedDelivery(s.id, NOW - timedelta(days=1), since_key(None), NOW, (("a", ("x",), 0),), f"<m{s.id}@x>")
               for s in (ann, bob)]
    outbox.add_deliveries(run, planned, NOW)
    assert {sid: status for sid, (_, status) in outbox.held_back(planned).items()} == {ann.id: "queued", bob.id: "queued"}
    with database.write() as connection:
        connection.execute(update(deliveries).values(status="failed", open_subscriber_id=None, attempts=3,
                                                     last_code=550, last_reply="550 no such user"))
    assert {sid: status for sid, (_, status) in outbox.held_back(planned).items()} == {ann.id: "failed", bob.id: "failed"}
    assert [(g.reply, g.count) for g in outbox.failure_groups()] == [("550 no such user", 2)]
    store.unsubscribe(bob.id, NOW)
    result = outbox.requeue(NOW, run_id=run)
    assert len(result.delivery_ids) == 1 and result.refused[0][1] == "the subscriber is unsubscribed"
    with database.read() as connection:
        row = connection.execute(select(deliveries).where(deliveries.c.id == result.delivery_ids[0])).one()
    assert (row.status, row.attempts, row.open_subscriber_id, row.message_id) == ("queued", 0, ann.id, f"<m{ann.id}@x>")
    assert outbox.report(run).status == "running" and outbox.report(run).queued == 1
    assert outbox.requeue(NOW, delivery_ids=[row.id]).delivery_ids == ()  # not failed any more


def test_campaign_deliveries_once_per_subscriber_beside_an_open_digest(database):
    store, (ann, bob) = _people(database, [("ann@example.org", None, ["a"]), ("bob@example.org", None, ["a"])])
    outbox = Outbox(database, OutboxSettings())
    digest_run = outbox.start_run("manual", {}, NOW)
    outbox.add_deliveries(digest_run, [PlannedDelivery(ann.id, NOW, since_key(None), NOW, (), "<d@x>")], NOW)
    with database.write() as connection:
        campaign_id = connection.execute(insert(campaigns).values(
            subject="Hi", body="Hello", categories=json.dumps([]), status="sending", created_at=NOW, created_by="t",
        )).inserted_primary_key[0]
    run = outbox.start_run("manual", {"campaign": campaign_id}, NOW)
    for _ in range(2):  # planned twice: still one each
        outbox.add_campaign_deliveries(run, campaign_id, NOW, [ann.id, bob.id], "x.example", NOW)
    assert outbox.campaign_counts(campaign_id)["total"] == 2 and outbox.refresh(digest_run, NOW).queued == 1
    assert outbox.campaign_text(campaign_id) == ("Hi", "Hello", "letter")  # the server default of the column
    assert [d.what for d in outbox.deliveries_of(ann.id)] == [f"campaign {campaign_id}", "digest"]


def test_console_sessions_expire_and_end(database):
    sessions = AdminSessions(database, timedelta(minutes=10))
    token = sessions.create("admin", NOW)
    assert sessions.actor(token, NOW + timedelta(minutes=9)) == "admin"
    assert sessions.actor(token, NOW + timedelta(minutes=10)) is None
    assert sessions.actor("forged", NOW) is None
    sessions.end(token)
    assert sessions.actor(token, NOW) is None
    log = AuditLog(database)
    log.record_many(NOW, "cli", "delivery.requeue", "delivery", [3, 4], "fixed")
    assert [(e.subject_id, e.detail) for e in log.recent()] == [(4, "fixed"), (3, "fixed")]
    assert [e.action for e in log.of("delivery", 3)] == ["delivery.requeue"]

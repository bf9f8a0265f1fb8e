"""The outbox on SQLite and PostgreSQL: one delivery per digest, one open per subscriber, the
high-water mark, retries and give-ups, bounces, crash recovery, run counts and pruning."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from syndicate.delivery._outbox import Outbox, Result
from syndicate.delivery._service import SendRequest
from syndicate.digest import Selector
from syndicate.mail import MemoryBackend
from syndicate.storage.schema import deliveries
from syndicate.subscribers._store import SubscriberStore
from tests.outbox_support import NOW, add_subscribers, open_db, service, settings_for, write_site
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)


@pytest.fixture
def site(tmp_path, database_url):
    database = open_db(database_url)
    settings = settings_for(tmp_path, database_url)
    yield settings, database
    database.close()


def statuses(database) -> dict[int, str]:
    with database.read() as connection:
        return dict(connection.execute(select(deliveries.c.subscriber_id, deliveries.c.status)).all())


def test_a_manual_send_records_one_delivery_per_subscriber_and_sends_each_once(site):
    settings, database = site
    people = add_subscribers(database, 5)
    backend = MemoryBackend()
    svc = service(settings, database, backend)
    run = svc.plan_manual(SendRequest(), NOW)
    assert (run.total, run.queued, run.status) == (5, 5, "running")
    done = svc.work(run.run_id, now=NOW)
    assert (done.sent, done.status, done.finished_at) == (5, "finished", NOW)
    assert sorted(m.recipients[0] for m in backend.outbox) == sorted(p.email for p in people)
    # The same articles again: nothing new to record, nothing sent.
    again = svc.plan_manual(SendRequest(), NOW + timedelta(minutes=5))
    assert again.total == 0 and svc.work(again.run_id).sent == 0
    assert len(backend.outbox) == 5


def test_a_scheduled_plan_and_a_manual_send_planned_together_give_one_copy_each(site):
    settings, database = site
    people = add_subscribers(database, 60)
    backend = MemoryBackend()
    barrier = threading.Barrier(2)
    reports = {}

    def scheduled():
        barrier.wait()
        reports["scheduled"] = service(settings, database, backend).plan_scheduled(NOW, grace=timedelta(days=60))

    def manual():
        barrier.wait()
        reports["manual"] = service(settings, database, backend).plan_manual(SendRequest(), NOW)

    threads = [threading.Thread(target=scheduled), threading.Thread(target=manual)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reports["scheduled"].total + reports["manual"].total == 60
    svc = service(settings, database, backend)
    for report in reports.values():
        svc.work(report.run_id, now=NOW)
    received = [m.recipients[0] for m in backend.outbox]
    assert sorted(received) == sorted(p.email for p in people)


def test_the_schedule_moves_on_and_a_second_scheduled_run_finds_nobody_due(site):
    settings, database = site
    people = add_subscribers(database, 3)
    svc = service(settings, database, MemoryBackend())
    due = NOW  # every subscriber is due (they were scheduled 30 days before NOW)
    first = svc.plan_scheduled(due, grace=timedelta(days=60))
    assert first.total == 3
    store = SubscriberStore(database)
    assert all(store.details(p.id).next_send_at > due for p in people)
    assert svc.plan_scheduled(due, grace=timedelta(days=60)).run_id == 0


def test_a_subscriber_missed_by_more_than_the_grace_time_is_rescheduled_not_sent(site):
    settings, database = site
    [person] = add_subscribers(database, 1)
    svc = service(settings, database, MemoryBackend())
    report = svc.plan_scheduled(NOW, grace=timedelta(hours=1))  # due since 30 days
    assert report.run_id == 0
    assert SubscriberStore(database).details(person.id).next_send_at > NOW


def test_the_high_water_mark_moves_only_when_the_digest_is_sent(site, smtp_server):
    settings, database = site
    server = smtp_server()
    settings = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={
        "host": "127.0.0.1", "port": server.port, "security": "none", "connections": 1})})
    settings = settings.model_copy(update={"mail": settings.mail.model_copy(update={"backend": "smtp"})})
    ok, later, refused = add_subscribers(database, 3)
    server.faults.rcpt(later.email, 451)
    server.faults.data(refused.email, 550)
    svc = service(settings, database)
    run = svc.plan_manual(SendRequest(), NOW)
    report = svc.work(run.run_id, now=NOW)
    assert (report.sent, report.retrying, report.failed, report.status) == (1, 1, 1, "running")
    store = SubscriberStore(database)
    assert store.get(ok.id).high_water == NOW - timedelta(hours=2)  # the newest article
    assert store.get(later.id).high_water is None
    assert store.get(refused.id).high_water is None
    assert statuses(database) == {ok.id: "sent", later.id: "retry", refused.id: "failed"}


def test_retries_back_off_then_give_up_after_max_attempts(site):
    settings, database = site
    settings = settings.model_copy(update={"outbox": settings.outbox.model_copy(update={"max_attempts": 3})})
    [person] = add_subscribers(database, 1)

    class Busy(MemoryBackend):
        def deliver(self, message):
            from syndicate.mail import SendResult
            return SendResult(message.key, message.message_id, "retry", 451, "451 try later")

    svc = service(settings, database, Busy())
    run = svc.plan_manual(SendRequest(), NOW)
    svc.work(run.run_id, now=NOW)
    outbox = Outbox(database, settings.outbox)
    [waiting] = outbox.waiting_retries()
    assert (waiting.attempts, waiting.next_attempt_at) == (1, NOW + timedelta(seconds=300))
    assert svc.retry_due(NOW + timedelta(seconds=299)).run_id == 0  # not yet
    svc.retry_due(NOW + timedelta(seconds=300))
    [waiting] = outbox.waiting_retries()
    assert waiting.next_attempt_at == NOW + timedelta(seconds=300 + 600)  # doubled
    svc.retry_due(NOW + timedelta(seconds=900))
    assert outbox.waiting_retries() == []
    [failure] = outbox.failures()
    assert failure.email == person.email and "gave up after 3 attempts" in failure.last_reply
    assert svc.report(run.run_id).status == "finished"
    assert SubscriberStore(database).get(person.id).status.value == "active"  # a give-up is no bounce


def test_a_subscriber_is_bounced_after_bounce_after_permanent_failures_in_a_row(site, tmp_path):
    settings, database = site
    settings = settings.model_copy(update={"outbox": settings.outbox.model_copy(update={"bounce_after": 2})})
    [person] = add_subscribers(database, 1)

    class Refusing(MemoryBackend):
        def deliver(self, message):
            from syndicate.mail import SendResult
            return SendResult(message.key, message.message_id, "failed", 550, "550 no such user")

    svc = service(settings, database, Refusing())
    first = svc.plan_manual(SendRequest(), NOW)
    svc.work(first.run_id, now=NOW)
    assert SubscriberStore(database).get(person.id).status.value == "active"
    write_site_newer(tmp_path)
    second = svc.plan_manual(SendRequest(), NOW + timedelta(hours=3))
    assert second.total == 1  # the high-water mark did not move: the new digest starts where the old one did
    svc.work(second.run_id, now=NOW + timedelta(hours=3))
    assert SubscriberStore(database).get(person.id).status.value == "bounced"


def write_site_newer(root):
    from tests.site_helpers import write_article
    write_article(root / "content", "late", title="Late story", categories=["city"],
                  date=(NOW + timedelta(hours=1)).isoformat())


def test_recover_requeues_deliveries_left_sending_by_a_dead_process(site):
    settings, database = site
    add_subscribers(database, 4)
    svc = service(settings, database, MemoryBackend())
    run = svc.plan_manual(SendRequest(), NOW)
    dead = Outbox(database, settings.outbox, worker="crashed-host:1:abc")
    claimed = dead.claim(NOW, 3, run_id=run.run_id)
    assert len(claimed) == 3
    # A live process (this one) is never robbed of its claims.
    assert Outbox(database, settings.outbox).recover(NOW, alive=lambda token: token != dead.worker) == 3
    assert svc.report(run.run_id).queued == 4
    assert svc.work(run.run_id, now=NOW).sent == 4


def test_recover_leaves_a_live_process_alone_and_can_fail_instead(site):
    settings, database = site
    add_subscribers(database, 2)
    fail = settings.outbox.model_copy(update={"in_flight": "fail"})
    svc = service(settings, database, MemoryBackend())
    run = svc.plan_manual(SendRequest(), NOW)
    live = Outbox(database, fail, worker="live:1:x")
    live.claim(NOW, 2, run_id=run.run_id)
    assert Outbox(database, fail).recover(NOW, alive=lambda token: True) == 0
    assert Outbox(database, fail).recover(NOW, alive=lambda token: False) == 2
    report = svc.report(run.run_id)
    assert (report.failed, report.status) == (2, "finished")
    assert all("in flight" in f.last_reply for f in svc.failures())


def test_an_unknown_category_is_refused_with_the_known_ones(site):
    settings, database = site
    from syndicate.errors import UsageError
    with pytest.raises(UsageError, match="unknown category nope"):
        service(settings, database).plan_manual(SendRequest(categories=("nope",)), NOW)


def test_category_and_frequency_filters_pick_the_matching_subscribers(site):
    settings, database = site
    add_subscribers(database, 2, categories=("city",))
    sport = add_subscribers(database, 2, categories=("sport",), start=10)
    backend = MemoryBackend()
    svc = service(settings, database, backend)
    assert [e for e, _ in svc.dry_run(SendRequest(categories=("sport",)), NOW)] == [p.email for p in sport]
    run = svc.plan_manual(SendRequest(categories=("sport",)), NOW)
    svc.work(run.run_id, now=NOW)
    assert sorted(m.recipients[0] for m in backend.outbox) == [p.email for p in sport]
    assert svc.dry_run(SendRequest(frequency="weekly"), NOW) == []


def test_prune_deletes_old_finished_runs_only(site):
    settings, database = site
    add_subscribers(database, 2)
    svc = service(settings, database, MemoryBackend())
    old = svc.plan_manual(SendRequest(), NOW)
    svc.work(old.run_id, now=NOW)
    assert svc.prune(NOW) == 0
    assert svc.prune(NOW + timedelta(days=1)) == 1
    assert svc.recent_runs() == [] and statuses(database) == {}


def test_each_digest_of_one_claimed_batch_carries_its_own_subscriber_s_issue_number(site):
    settings, database = site
    from tests.site_helpers import write_article

    first, second = add_subscribers(database, 2)
    backend = MemoryBackend()
    svc = service(settings, database, backend)
    assert svc.work(svc.plan_manual(SendRequest(), NOW).run_id, now=NOW).sent == 2  # issue 1 each
    with database.write() as connection:  # five more of the second's digests, pruned since
        SubscriberStore(database).within(connection).count_out_issues({second.id: 5})
    [third] = add_subscribers(database, 1, start=2)
    later = NOW + timedelta(days=1)
    write_article(settings.content.folder, "late", title="A later story", categories=["city"],
                  date=(later - timedelta(hours=1)).isoformat())
    run = svc.plan_manual(SendRequest(), later)
    claimed = svc.outbox.claim(later, 10, run_id=run.run_id)
    assert {d.subscriber.id: d.issue for d in claimed} == {first.id: 2, second.id: 7, third.id: 1}
    svc.outbox.record([Result(d, "queued", None, "") for d in claimed], later)
    assert svc.work(run.run_id, now=later).sent == 3
    issues = {m.recipients[0]: re.search(r"Issue (\d+)", m.data.decode()).group(1) for m in backend.outbox[2:]}
    assert issues == {first.email: "2", second.email: "7", third.email: "1"}



def test_resume_finishes_an_interrupted_run_and_a_recovered_retry_is_due_again(site):
    settings, database = site
    add_subscribers(database, 3)
    backend = MemoryBackend()
    svc = service(settings, database, backend)
    run = svc.plan_manual(SendRequest(), NOW)
    dead = Outbox(database, settings.outbox, worker="gone-host:1:x")
    [first] = dead.claim(NOW, 1, run_id=run.run_id)
    dead.record([Result(first, "retry", 451, "451 4.2.1 try later")], NOW)
    [again] = dead.claim(NOW + timedelta(seconds=300), 1)  # its retry, claimed; then the process dies
    assert again.id == first.id
    assert svc.outbox.recover(NOW, alive=lambda token: False) == 1
    [waiting] = svc.waiting_retries()
    assert (waiting.delivery_id, waiting.attempts) == (first.id, 1)
    assert [r.sent for r in svc.resume(now=NOW)] == [2]
    assert svc.report(run.run_id).status == "running"  # the retry keeps it open
    svc.retry_due(NOW + timedelta(seconds=300))
    assert svc.report(run.run_id).status == "finished"
    assert sorted(m.recipients[0] for m in backend.outbox) == [f"reader{i}@example.org" for i in range(3)]


def test_migration_0002_adds_the_outbox_to_a_database_at_0001_and_keeps_its_subscribers(database_url, tmp_path):
    from syndicate.storage._database import create_database, current_revision, head_revision, upgrade

    database = create_database(database_url)
    try:
        upgrade(database, "0001")
        [person] = add_subscribers(database, 1)
        assert upgrade(database) == ("0001", head_revision()) and current_revision(database) == head_revision()
        assert SubscriberStore(database).get(person.id).email == person.email
        settings = settings_for(tmp_path, database_url)
        backend = MemoryBackend()
        svc = service(settings, database, backend)
        assert svc.work(svc.plan_manual(SendRequest(), NOW).run_id, now=NOW).sent == 1
    finally:
        database.close()


def test_recover_takes_back_claims_hours_old_even_from_a_live_process(site):
    settings, database = site
    add_subscribers(database, 2)
    svc = service(settings, database, MemoryBackend())
    run = svc.plan_manual(SendRequest(), NOW)
    Outbox(database, settings.outbox, worker="live:1:x").claim(NOW, 2, run_id=run.run_id)
    outbox = Outbox(database, settings.outbox)
    assert outbox.recover(NOW + timedelta(minutes=5), alive=lambda token: True) == 0
    assert outbox.recover(NOW + timedelta(hours=2), alive=lambda token: True) == 2
    assert svc.work(run.run_id, now=NOW).sent == 2


def test_retry_due_resumes_a_run_abandoned_with_queued_deliveries(site):
    settings, database = site
    add_subscribers(database, 3)
    backend = MemoryBackend()
    svc = service(settings, database, backend)
    run = svc.plan_manual(SendRequest(), NOW)  # planned, then the process died before sending
    assert svc.retry_due(NOW + timedelta(minutes=1)).run_id == 0 and backend.outbox == []  # maybe still being worked
    svc.retry_due(NOW + timedelta(minutes=6))
    assert svc.report(run.run_id).status == "finished" and len(backend.outbox) == 3


def test_planning_through_the_corpus_timeline_selects_as_from_every_article(tmp_path):
    """Timeline.of_corpus (what planning uses: an Article made only when a digest shows it) gives
    the same digests as a Selector of every article, for marks near and far and first digests."""
    from dataclasses import replace

    from syndicate.digest import Timeline
    from syndicate.wiring import content_source

    write_site(tmp_path, 60)  # one article every two hours: five days
    settings = settings_for(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    database = open_db(settings.database.url)
    people = add_subscribers(database, 3)
    marks = [None, NOW - timedelta(hours=7), NOW - timedelta(days=3), NOW - timedelta(days=30)]
    people = [replace(p, high_water=mark) for p in people for mark in marks]
    every = content_source(settings).read()
    lazy = content_source(settings).read()
    expected = [Selector(every.articles, every.categories, NOW, 30).select(p) for p in people]
    assert [Selector(Timeline.of_corpus(lazy), lazy.categories, NOW, 30).select(p) for p in people] == expected
    database.close()


def test_a_result_the_recorder_thread_cannot_write_is_raised_once_and_no_later_batch_is_written(site):
    from syndicate.delivery._service import _Recorder

    settings, database = site
    add_subscribers(database, 3)
    svc = service(settings, database, MemoryBackend())
    run = svc.plan_manual(SendRequest(), NOW)
    outbox = Outbox(database, settings.outbox, subscribers=SubscriberStore(database))
    first, second, third = outbox.claim(NOW, 3, run_id=run.run_id)
    recorder = _Recorder(outbox, lambda: NOW)
    recorder.add(first, "sent", 250, "ok")
    recorder.flush()
    recorder.add(second, "no such outcome", None, "")  # the write of this batch fails in the recorder's thread
    recorder.flush()
    recorder.add(third, "sent", 250, "ok")
    with pytest.raises(KeyError):
        recorder.close()
    recorder.flush()  # told once: not raised again
    with database.read() as connection:
        by_id = dict(connection.execute(select(deliveries.c.id, deliveries.c.status)).all())
    assert (by_id[first.id], by_id[second.id], by_id[third.id]) == ("sent", "sending", "sending")

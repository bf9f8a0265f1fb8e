"""Sending through a real SMTP server (aiosmtpd on 127.0.0.1) told to misbehave: every fault ends in
the right status, retries happen, and every digest arrives exactly once."""

from __future__ import annotations

import email
import email.policy
import threading
from collections import Counter
from datetime import timedelta

import pytest

from syndicate.delivery._service import SendRequest
from syndicate.errors import MailAuthError
from syndicate.subscribers._store import SubscriberStore
from syndicate.subscribers._tokens import LinkSigner
from tests.outbox_support import NOW, SECRET, add_subscribers, open_db, service, settings_for
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)

LATER = NOW + timedelta(seconds=300)


@pytest.fixture(params=[True, False], ids=["pipelining", "one command at a time"])
def setup(request, tmp_path, smtp_server, database_url):
    """(settings, database, server) on SQLite or PostgreSQL, with a strict server offering PIPELINING,
    and the client using it or not."""
    server = smtp_server(strict=True)
    database = open_db(database_url)
    yield settings_for(tmp_path, database_url, port=server.port, smtp={"pipelining": request.param}), database, server
    database.close()


def delivered(server) -> Counter:
    return Counter(r.recipients[0] for r in server.received)


def run_once(settings, database, **work):
    svc = service(settings, database)
    run = svc.plan_manual(SendRequest(), NOW)
    return svc, run, svc.work(run.run_id, now=NOW, **work)


def test_a_strict_server_accepts_every_digest_with_signed_links_and_the_planned_message_id(setup):
    settings, database, server = setup
    people = add_subscribers(database, 4)
    svc, run, report = run_once(settings, database)
    assert (report.sent, report.status) == (4, "finished")
    assert delivered(server) == Counter(p.email for p in people)
    assert server.pipelined == (4 if settings.smtp.pipelining else 0)
    message = email.message_from_bytes(server.received[0].data, policy=email.policy.default)
    token = message["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]
    subscriber_id = LinkSigner(SECRET["SYNDICATE_SECRET"]).check("unsubscribe", token)
    assert message["To"].addresses[0].addr_spec == SubscriberStore(database).get(subscriber_id).email
    assert message["Message-ID"].startswith(f"<digest.{subscriber_id}.")


@pytest.mark.parametrize("code", [450, 451, 452])
def test_a_temporary_refusal_after_rcpt_is_retried_and_delivered_once(setup, code):
    settings, database, server = setup
    people = add_subscribers(database, 3)
    server.faults.rcpt(people[1].email, code, times=1)
    svc, run, report = run_once(settings, database)
    assert (report.sent, report.retrying, report.status) == (2, 1, "running")
    [waiting] = svc.waiting_retries()
    assert waiting.email == people[1].email and str(code) in waiting.last_reply
    svc.retry_due(LATER)
    assert svc.report(run.run_id).status == "finished"
    assert delivered(server) == Counter(p.email for p in people)


@pytest.mark.parametrize("code", [550, 554])
def test_a_permanent_refusal_after_data_fails_with_its_reason_and_is_not_retried(setup, code):
    settings, database, server = setup
    people = add_subscribers(database, 3)
    server.faults.data(people[0].email, code)
    svc, run, report = run_once(settings, database)
    assert (report.sent, report.failed, report.status) == (2, 1, "finished")
    [failure] = svc.failures()
    assert failure.email == people[0].email and failure.last_code == code
    assert svc.retry_due(LATER + timedelta(days=1)).run_id == 0
    assert delivered(server) == Counter(p.email for p in people[1:])


def test_a_421_greeting_is_retried_and_everything_arrives_once(setup):
    settings, database, server = setup
    people = add_subscribers(database, 5)
    server.faults.refuse_connections(2)  # both connections of the backend
    svc, run, report = run_once(settings, database)
    assert report.retrying >= 1 and report.sent + report.retrying == 5
    svc.retry_due(LATER)
    assert svc.report(run.run_id).sent == 5
    assert delivered(server) == Counter(p.email for p in people)


def test_a_connection_dropped_during_data_is_retried_and_not_doubled(setup):
    settings, database, server = setup
    people = add_subscribers(database, 4)
    server.faults.drop_in_data(people[2].email, times=1)
    svc, run, report = run_once(settings, database)
    assert report.retrying == 1
    svc.retry_due(LATER)
    assert svc.report(run.run_id).status == "finished"
    assert delivered(server) == Counter(p.email for p in people)


def test_a_server_down_then_back_gets_every_digest_once(setup):
    settings, database, server = setup
    people = add_subscribers(database, 6)
    server.go_down()
    svc, run, report = run_once(settings, database)
    assert (report.sent, report.retrying) == (0, 6)
    assert all(p.high_water is None for p in (SubscriberStore(database).get(q.id) for q in people))
    server.come_back()
    again = svc.retry_due(LATER)
    assert (again.kind, again.sent) == ("retry", 6)
    assert svc.report(run.run_id).status == "finished"
    assert delivered(server) == Counter(p.email for p in people)


def test_a_wrong_password_is_a_clear_error_and_nothing_is_marked_sent(tmp_path, smtp_server):
    server = smtp_server(username="ann", password="right")
    url = f"sqlite:///{tmp_path / 'syndicate.db'}"
    database = open_db(url)
    settings = settings_for(tmp_path, url, port=server.port, smtp={"username": "ann"})  # password "pw" from SECRET
    add_subscribers(database, 3)
    svc = service(settings, database)
    run = svc.plan_manual(SendRequest(), NOW)
    with pytest.raises(MailAuthError, match="ann"):
        svc.work(run.run_id, now=NOW)
    report = svc.report(run.run_id)
    assert (report.sent, report.queued, report.status) == (0, 3, "running")
    assert server.received == []
    database.close()


def test_an_unsubscribe_during_a_run_stops_that_subscribers_unsent_digest(setup):
    settings, database, server = setup
    people = add_subscribers(database, 40)
    server.data_delay = 0.03
    leaver = people[-1]
    store = SubscriberStore(database)

    def unsubscribe_soon():
        while len(server.received) < 4:
            threading.Event().wait(0.01)
        store.unsubscribe(leaver.id, NOW)

    thread = threading.Thread(target=unsubscribe_soon)
    thread.start()
    svc, run, report = run_once(settings, database)
    thread.join()
    assert (report.sent, report.skipped, report.status) == (39, 1, "finished")
    assert leaver.email not in delivered(server)


def test_a_stop_leaves_the_rest_queued_and_a_second_work_finishes_it(setup):
    settings, database, server = setup
    people = add_subscribers(database, 30)
    server.data_delay = 0.02
    stop = threading.Event()
    seen = []

    def progress(report):
        seen.append(report)

    def stop_soon():
        while len(server.received) < 3:
            threading.Event().wait(0.005)
        stop.set()

    thread = threading.Thread(target=stop_soon)
    thread.start()
    svc, run, report = run_once(settings, database, stop=stop, progress=progress)
    thread.join()
    assert report.status == "running" and report.queued > 0 and report.sending == 0
    assert seen and seen[-1] == report
    svc.work(run.run_id, now=NOW)
    assert delivered(server) == Counter(p.email for p in people)


def test_a_scheduled_run_and_a_manual_send_working_together_send_one_copy_each(setup):
    settings, database, server = setup
    people = add_subscribers(database, 80)
    barrier = threading.Barrier(2)
    errors = []

    def scheduled():
        try:
            svc = service(settings, database)
            barrier.wait()
            run = svc.plan_scheduled(NOW, grace=timedelta(days=60))
            svc.work(run.run_id, now=NOW)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def manual():
        try:
            svc = service(settings, database)
            barrier.wait()
            run = svc.plan_manual(SendRequest(), NOW)
            svc.work(run.run_id, now=NOW)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=scheduled), threading.Thread(target=manual)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert delivered(server) == Counter(p.email for p in people)  # each exactly once
    store = SubscriberStore(database)
    assert all(store.get(p.id).high_water == NOW - timedelta(hours=2) for p in people)


def test_the_service_resumes_a_run_left_queued_at_start_up_and_sends_each_digest_once(setup):
    """A send interrupted (here: stopped after 3 messages) is finished by the service as soon as it
    starts, not after the retry job's ABANDONED_AFTER."""
    from syndicate.service._service import Service

    settings, database, server = setup
    people = add_subscribers(database, 40)  # more than the backend's window (2 connections x 8): some stay queued
    stop = threading.Event()

    def stop_soon():
        while len(server.received) < 3:
            threading.Event().wait(0.005)
        stop.set()

    server.data_delay = 0.02
    thread = threading.Thread(target=stop_soon)
    thread.start()
    svc, run, report = run_once(settings, database, stop=stop)
    thread.join()
    assert report.status == "running" and report.queued > 0
    server.data_delay = 0
    running = Service(settings, environ=SECRET, scheduler=False)
    try:
        running.open(NOW)
        assert running.resumer is not None
        running.resumer.join(timeout=30)
        assert not running.resumer.is_alive()
    finally:
        running.close()
    assert svc.report(run.run_id).status == "finished"
    assert delivered(server) == Counter(p.email for p in people)
    assert len(server.received) == len(people)

"""The bounce mailbox on real parts: digests sent through aiosmtpd with VERP, their bounces, a mail to a
subscriber's unsubscribe address (and mail that is neither) delivered to a Dovecot IMAP server, picked up by the service's scheduler job. Only the
recognised messages move to the processed folder; the rest stay in the inbox unread and unflagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from imapclient import IMAPClient

from syndicate.bounces import BounceEvents
from syndicate.config import load_settings
from syndicate.service._scheduler import BOUNCE_MAILBOX, Scheduler
from syndicate.service._service import Service
from syndicate.subscribers import SubscriberStatus, SubscriberStore
from tests.bounce_support import dsn, env, sent_to  # noqa: F401  (fixture)
from tests.imapserver import PASSWORD, USER, dovecot  # noqa: F401  (fixture)
from tests.outbox_support import SECRET, add_subscribers
from tests.site_helpers import write_article
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)

CORPUS = Path(__file__).parent / "data" / "bounces"
UNRELATED = ["unrelated_human_reply.eml", "unrelated_invoice.eml", "autoreply_rfc3834.eml", "gmail_delay.eml",
             "unrelated_mentions_delivery_failure.eml"]


def imap_config(config: Path, port: int) -> None:
    config.write_text(config.read_text() + (
        f'[bounces.imap]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nusername = "{USER}"\n'
        f'folder = "INBOX"\nprocessed_folder = "Processed"\n'))


def mailbox(port: int) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=port, ssl=False)
    client.login(USER, PASSWORD)
    return client


def test_the_scheduler_job_reads_the_mailbox_and_moves_only_what_it_recognised(env, dovecot, tmp_path):
    run, server, database, config = env
    imap_config(config, dovecot.port)
    people = add_subscribers(database, 4, now=datetime.now(UTC))
    assert run("send", "--yes")[0] == 0
    client = mailbox(dovecot.port)
    for person in people[:2]:
        sender, _ = sent_to(server, person.email)
        client.append("INBOX", dsn(sender, person.email).replace(b"\n", b"\r\n"))
    for name in UNRELATED:
        client.append("INBOX", (CORPUS / name).read_bytes().replace(b"\n", b"\r\n"))
    _, digest = sent_to(server, people[2].email)
    mailto = digest["List-Unsubscribe"].split("mailto:")[1].split("?")[0]
    client.append("INBOX", f"From: {people[2].email}\r\nTo: {mailto}\r\nSubject: unsubscribe\r\n\r\nplease\r\n".encode())

    settings = load_settings(config)
    service = Service(settings, environ={**SECRET, "SYNDICATE_BOUNCE_IMAP_PASSWORD": PASSWORD}, scheduler=False)
    service.open()
    try:
        jobs = service.jobs()
        assert BOUNCE_MAILBOX in {job.id for job in jobs}
        scheduler = Scheduler(service.database, jobs, misfire_grace=60)
        scheduler.run(BOUNCE_MAILBOX)
        scheduler.run(BOUNCE_MAILBOX)  # a second poll reads nothing twice
    finally:
        service.close()

    store = SubscriberStore(database)
    assert [store.get(p.id).status for p in people] == [SubscriberStatus.BOUNCED] * 2 + [
        SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.ACTIVE]
    events = BounceEvents(database).list()
    # The auto-reply and the delay warning are recorded as ignored (seen, not acted on); unrelated mail not at all.
    assert sorted(e.kind for e in events) == ["hard", "hard", "ignored", "ignored", "unsubscribe"]
    kept = BounceEvents(database).get(next(e.id for e in events if e.kind == "hard"))
    assert b"Undelivered Mail Returned to Sender" in kept.raw and kept.source == "imap"

    client.select_folder("Processed", readonly=True)
    assert len(client.search(["ALL"])) == 3, "the two bounces and the unsubscribe request"
    client.select_folder("INBOX", readonly=True)
    left = client.search(["ALL"])
    assert len(left) == len(UNRELATED), "no unrelated message is moved or deleted"
    flags = client.get_flags(left)
    assert all(not flag for flag in flags.values()), "left unread and unflagged"
    subjects = sorted(m[b"BODY[HEADER.FIELDS (SUBJECT)]"] for m in client.fetch(left, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).values())
    assert len(subjects) == len(UNRELATED)
    client.logout()

    write_article(tmp_path / "content", "fresh", title="Fresh", categories=["city"],
                  date=(datetime.now(UTC) - timedelta(minutes=5)).isoformat())
    before = len(server.received)
    assert run("send", "--yes")[0] == 0
    assert [r.recipients[0] for r in server.received[before:]] == [people[3].email]


def test_a_wrong_password_is_a_clear_error_and_nothing_moves(env, dovecot):
    run, server, database, config = env
    imap_config(config, dovecot.port)
    from syndicate.bounces import MailboxError
    from syndicate.wiring import Components

    components = Components(load_settings(config), environ={**SECRET, "SYNDICATE_BOUNCE_IMAP_PASSWORD": "wrong"})
    try:
        reader = components.bounce_mailbox()
        try:
            reader.poll(datetime.now(UTC))
            raise AssertionError("a wrong password must fail")
        except MailboxError as e:
            assert "cannot log in as bounces" in str(e)
    finally:
        components.close()

"""Mail backends: one contract every backend keeps, then the SMTP backend against a real, misbehaving server."""

from __future__ import annotations

import email.policy
import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from syndicate.config import default_settings, settings_from_mapping
from syndicate.errors import MailAuthError, MailError, MailSecurityError, MissingSecretError, UsageError
from syndicate.mail import (
    ConsoleBackend,
    FileBackend,
    MailBackend,
    MemoryBackend,
    OutgoingMessage,
    SendResult,
    SmtpBackend,
    make_backend,
)
from syndicate.mail.smtp import WINDOW_PER_CONNECTION, _Connection
from tests.smtpserver import SmtpTestServer, smtp_server, tls_ca, write_ca  # noqa: F401 (fixtures)

SENDER = "digest@news.test"


def _sections(settings):
    return settings.mail, settings.smtp


def message(number: int, *recipients: str, data: bytes | None = None) -> OutgoingMessage:
    recipients = recipients or (f"reader{number}@example.org",)
    message_id = f"<{number}.digest@news.test>"
    body = data or (
        f"From: Syndicate <{SENDER}>\r\nTo: {recipients[0]}\r\nSubject: Digest {number}\r\n"
        f"Message-ID: {message_id}\r\n\r\nHello {number}\r\n.a line starting with a dot\r\n"
    ).encode()
    return OutgoingMessage(f"delivery-{number}", SENDER, tuple(recipients), body, message_id)


def smtp_backend(server: SmtpTestServer, **options: object) -> MailBackend:
    settings = settings_from_mapping(
        {"mail": {"backend": "smtp"}, "smtp": {"host": "127.0.0.1", "port": server.port, "security": "none"}}
    )
    return make_backend(settings.mail, settings.smtp, **{"timeout": 5.0, "ehlo_name": "sender.test", **options})


# --- the contract ------------------------------------------------------------------------------------


@dataclass
class Case:
    """A backend and a way to read back what reached its destination: (recipients, bytes) per message."""

    backend: MailBackend
    delivered: Callable[[], list[tuple[tuple[str, ...], bytes]]]


def _memory_case(tmp_path: Path, smtp_server: Callable[..., SmtpTestServer]) -> Case:
    backend = make_backend(*_sections(default_settings(tmp_path)), backend="memory")
    assert isinstance(backend, MemoryBackend)
    return Case(backend, lambda: [(m.recipients, m.data) for m in backend.outbox])


def _file_case(tmp_path: Path, smtp_server: Callable[..., SmtpTestServer]) -> Case:
    backend = make_backend(*_sections(default_settings(tmp_path)), backend="file", folder=tmp_path / "maildir")

    def delivered() -> list[tuple[tuple[str, ...], bytes]]:
        assert not list((tmp_path / "maildir" / "tmp").iterdir()), "a half-written message was left in tmp/"
        files = sorted((tmp_path / "maildir" / "new").iterdir(), key=lambda path: path.stat().st_mtime_ns)
        assert all(path.suffix == ".eml" for path in files)
        return [(_to_header(path.read_bytes()), path.read_bytes()) for path in files]

    return Case(backend, delivered)


def _console_case(tmp_path: Path, smtp_server: Callable[..., SmtpTestServer]) -> Case:
    stream = io.StringIO()
    backend = make_backend(*_sections(default_settings(tmp_path)), backend="console", stream=stream)

    def delivered() -> list[tuple[tuple[str, ...], bytes]]:
        chunks = [chunk for chunk in stream.getvalue().split("-" * 79 + "\n") if chunk]
        out = []
        for chunk in chunks:
            envelope, _, text = chunk.partition("Envelope-To: ")
            recipients, _, text = text.partition("\n")
            out.append((tuple(recipients.split(", ")), text.replace("\n", "\r\n").encode()))
        return out

    return Case(backend, delivered)


def _smtp_case(tmp_path: Path, smtp_server: Callable[..., SmtpTestServer]) -> Case:
    server = smtp_server()
    return Case(smtp_backend(server, connections=3), lambda: [(r.recipients, r.data) for r in server.received])


def _to_header(data: bytes) -> tuple[str, ...]:
    line = next(line for line in data.split(b"\r\n") if line.startswith(b"To: "))
    return (line[4:].decode(),)


CASES = {"memory": _memory_case, "file": _file_case, "console": _console_case, "smtp": _smtp_case}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path, smtp_server: Callable[..., SmtpTestServer]) -> Case:
    return CASES[request.param](tmp_path, smtp_server)


class Counting:
    """An iterable of messages that counts how many have been taken from it."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.taken = 0

    def __iter__(self) -> Iterator[OutgoingMessage]:
        for number in range(self.count):
            self.taken += 1
            yield message(number)


class TestBackendContract:
    """What the outbox relies on, whichever backend is configured."""

    def test_every_message_arrives_byte_for_byte_and_is_reported_sent_once(self, case: Case) -> None:
        messages = [message(number) for number in range(7)]
        with case.backend:
            results = list(case.backend.send_messages(messages))
        assert sorted(r.key for r in results) == sorted(m.key for m in messages)
        assert all(r.outcome == "sent" for r in results), results
        assert {r.key: r.message_id for r in results} == {m.key: m.message_id for m in messages}
        assert sorted(case.delivered()) == sorted((m.recipients, m.data) for m in messages)

    def test_reads_the_messages_lazily_a_bounded_few_ahead_of_the_results(self, case: Case) -> None:
        source = Counting(120)
        ahead = []
        with case.backend:
            for done, _ in enumerate(case.backend.send_messages(source), 1):
                ahead.append(source.taken - done)
        assert len(ahead) == 120
        # At most the SMTP backend's window (3 connections here): the others read one at a time.
        assert max(ahead) <= 3 * WINDOW_PER_CONNECTION, "the backend read far ahead of what it had sent: memory would grow"

    def test_stop_event_takes_no_new_message_and_reports_every_taken_one(self, case: Case) -> None:
        source, stop = Counting(200), threading.Event()
        results: list[SendResult] = []
        with case.backend:
            for result in case.backend.send_messages(source, stop=stop):
                results.append(result)
                if len(results) == 3:
                    stop.set()
        assert 3 <= source.taken <= 3 + 3 * WINDOW_PER_CONNECTION  # at most the window (3 connections) beyond the 3 reported
        assert len(results) == source.taken, "a message taken before the stop got no result"
        assert len(case.delivered()) == source.taken

    def test_opens_by_itself_and_can_be_used_again_after_close(self, case: Case) -> None:
        first = list(case.backend.send_messages([message(1)]))
        with case.backend:
            second = list(case.backend.send_messages([message(2)]))
            third = list(case.backend.send_messages([]))
        assert [r.outcome for r in first + second] == ["sent", "sent"]
        assert third == []
        assert len(case.delivered()) == 2


def test_the_configured_name_picks_the_backend(tmp_path: Path) -> None:
    expected = {"smtp": SmtpBackend, "file": FileBackend, "console": ConsoleBackend, "memory": MemoryBackend}
    for name, kind in expected.items():
        settings = settings_from_mapping({"mail": {"backend": name, "folder": str(tmp_path)}})
        assert type(make_backend(settings.mail, settings.smtp)) is kind
    with pytest.raises(UsageError, match="unknown mail backend 'pigeon'"):
        make_backend(*_sections(default_settings(tmp_path)), backend="pigeon")
    with pytest.raises(UsageError, match="connections"):
        make_backend(*_sections(default_settings(tmp_path)), backend="smtp", connections=0)


def test_a_message_without_recipients_is_refused_when_built() -> None:
    with pytest.raises(UsageError, match="delivery-x: recipients must be a non-empty tuple"):
        OutgoingMessage("delivery-x", SENDER, (), b"Subject: x\r\n\r\n", "<x@news.test>")
    with pytest.raises(UsageError):
        OutgoingMessage("delivery-x", SENDER, "reader@example.org", b"Subject: x\r\n\r\n", "<x@news.test>")  # type: ignore[arg-type]


@pytest.mark.parametrize("sender, recipient", [
    (SENDER, "Reader <reader@example.org>"),
    (SENDER, "<reader@example.org>"),
    (SENDER, "reader@example.org>\r\nRCPT TO:<victim@example.net"),
    (SENDER, "reader @example.org"),
    ("Digest <digest@news.test>", "reader@example.org"),
])
def test_an_address_that_is_not_bare_is_refused_when_built(sender, recipient) -> None:
    """A backend writes `<address>` as it is (RFC 5321's path): a name, brackets or a line break never reach it."""
    with pytest.raises(UsageError, match="is not a bare address"):
        OutgoingMessage("delivery-x", sender, (recipient,), b"Subject: x\r\n\r\n", "<x@news.test>")
    OutgoingMessage("delivery-x", SENDER, ("jörg@example.org", "u@xn--mnchen-3ya.de"), b"Subject: x\r\n\r\n", "<x@news.test>")


def test_file_backend_reports_a_write_it_could_not_make_as_retry(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "outbox")
    with backend:
        (tmp_path / "outbox" / "new").rmdir()
        (tmp_path / "outbox" / "new").write_text("not a folder")
        [result] = backend.send_messages([message(1)])
    assert result.outcome == "retry" and "cannot write" in result.reply
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []


def test_file_backend_uses_a_maildir_layout(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "outbox")
    [result] = backend.send_messages([message(1)])
    assert {path.name for path in (tmp_path / "outbox").iterdir()} == {"tmp", "new", "cur"}
    [path] = (tmp_path / "outbox" / "new").iterdir()
    assert path.name.endswith(".eml") and str(path) in result.reply
    assert path.read_bytes() == message(1).data


# --- SMTP: security and login ------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_a_verified_certificate_sends(security, smtp_server, tls_ca, tmp_path) -> None:
    server = smtp_server(security=security, cert=tls_ca.issue_cert("127.0.0.1", "localhost"))
    backend = smtp_backend(server, security=security, ca_file=str(write_ca(tls_ca, tmp_path)))
    [result] = backend.send_messages([message(1)])
    assert result.outcome == "sent" and result.code == 250
    [received] = server.received
    assert received.tls and received.data == message(1).data


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_an_untrusted_certificate_is_a_clear_error_and_nothing_is_sent(security, smtp_server, tls_ca) -> None:
    server = smtp_server(security=security, cert=tls_ca.issue_cert("127.0.0.1"))
    backend = smtp_backend(server, security=security)  # no ca_file: the system CAs do not know the test CA
    results = []
    with pytest.raises(MailSecurityError, match=rf"127\.0\.0\.1:{server.port}.*certificate not trusted") as raised:
        results.extend(backend.send_messages([message(1), message(2)]))
    assert "ca_file" in (raised.value.hint or "")
    assert results == [] and server.received == []


def test_starttls_required_but_not_offered_is_a_clear_error(smtp_server) -> None:
    server = smtp_server()
    with pytest.raises(MailSecurityError, match="does not offer STARTTLS"):
        list(smtp_backend(server, security="starttls").send_messages([message(1)]))
    assert server.received == []


def test_login_with_the_password_from_the_environment(smtp_server, tls_ca, tmp_path, monkeypatch) -> None:
    server = smtp_server(security="starttls", cert=tls_ca.issue_cert("127.0.0.1"), username="ann", password="s3cret")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    backend = smtp_backend(
        server, security="starttls", ca_file=str(write_ca(tls_ca, tmp_path)), username="ann",
        password_env="TEST_SMTP_PASSWORD",
    )
    assert [r.outcome for r in backend.send_messages([message(1), message(2)])] == ["sent", "sent"]
    assert [r.user for r in server.received] == ["ann", "ann"]


def test_a_wrong_password_raises_naming_server_and_user_and_nothing_is_sent(smtp_server, tls_ca, tmp_path) -> None:
    server = smtp_server(security="tls", cert=tls_ca.issue_cert("127.0.0.1"), username="ann", password="s3cret")
    backend = smtp_backend(
        server, security="tls", ca_file=str(write_ca(tls_ca, tmp_path)), username="ann", password_env="PW",
        environ={"PW": "wrong"},
    )
    results = []
    with pytest.raises(MailAuthError, match=rf"127\.0\.0\.1:{server.port} refused login for user 'ann': 535"):
        results.extend(backend.send_messages(message(n) for n in range(20)))
    assert results == [] and server.received == []


def test_a_server_requiring_login_when_none_is_configured_stops_the_run(smtp_server, tls_ca, tmp_path) -> None:
    server = smtp_server(security="starttls", cert=tls_ca.issue_cert("127.0.0.1"), username="ann", password="s3cret")
    backend = smtp_backend(server, security="starttls", ca_file=str(write_ca(tls_ca, tmp_path)))
    results = []
    with pytest.raises(MailAuthError, match="user '\\(none\\)': 530") as raised:
        results.extend(backend.send_messages(message(n) for n in range(5)))
    assert "username" in (raised.value.hint or "")
    assert results == [] and server.received == []


def test_a_missing_password_variable_is_reported_before_connecting(smtp_server) -> None:
    server = smtp_server()
    backend = smtp_backend(server, username="ann", password_env="NO_SUCH_VARIABLE_SET", environ={})
    with pytest.raises(MissingSecretError, match="NO_SUCH_VARIABLE_SET"):
        list(backend.send_messages([message(1)]))
    assert server.sessions == 0


# --- SMTP: what a strict server accepts ----------------------------------------------------------------


def test_a_strict_server_accepts_a_properly_built_message_with_long_content(smtp_server) -> None:
    server = smtp_server(strict=True)
    built = EmailMessage(policy=email.policy.SMTP)
    built["From"] = f"Syndicate <{SENDER}>"
    built["To"] = "reader@example.org"
    built["Subject"] = "A subject that goes on " + "and on " * 40
    built["Message-ID"] = "<long@news.test>"
    built.set_content("A paragraph without a single line break. " * 300 + "\n.leading dot\n")
    built.add_alternative("<p>" + "<b>bold</b> words " * 500 + "</p>", subtype="html")
    data = built.as_bytes()
    assert max(len(line) for line in data.split(b"\r\n")) <= 998 and b"\n" not in data.replace(b"\r\n", b"")
    sent = OutgoingMessage("long", SENDER, ("reader@example.org",), data, "<long@news.test>")
    assert [r.outcome for r in smtp_backend(server).send_messages([sent])] == ["sent"]
    assert server.received[0].data == data


def test_the_strict_server_really_refuses_bare_line_feeds_and_long_lines(smtp_server) -> None:
    server = smtp_server(strict=True)
    bare = message(1, data=b"Subject: bare\r\n\r\nline one\nline two\r\n")
    long = message(2, data=b"Subject: long\r\n\r\n" + b"x" * 990 + b"\r\n" + b"y" * 999 + b"\r\n")
    results = {r.key: r for r in smtp_backend(server, connections=1).send_messages([bare, long])}
    assert (results["delivery-1"].outcome, results["delivery-1"].code) == ("failed", 550)
    assert "bare" in results["delivery-1"].reply
    assert results["delivery-2"].outcome == "failed" and results["delivery-2"].code in (500, 550)
    assert server.received == []


def test_eight_bit_content_and_international_addresses_are_declared(smtp_server) -> None:
    server = smtp_server()
    data = "Subject: Café\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nÇa va, José ?\r\n".encode()
    sent = OutgoingMessage("intl", SENDER, ("josé@exemple.fr",), data, "<intl@news.test>")
    assert [r.outcome for r in smtp_backend(server).send_messages([sent])] == ["sent"]
    [received] = server.received
    assert received.recipients == ("josé@exemple.fr",) and received.data == data
    assert {"BODY=8BITMIME", "SMTPUTF8"} <= set(received.options)


# --- SMTP: faults from a misbehaving server --------------------------------------------------------------


FAULTS = [
    # (fault, (outcome, code))
    ("connect 421", ("retry", 421)),
    ("mail 451", ("retry", 451)),
    ("rcpt 450", ("retry", 450)),
    ("rcpt 451", ("retry", 451)),
    ("rcpt 452", ("retry", 452)),
    ("rcpt 550", ("failed", 550)),
    ("data 451", ("retry", 451)),
    ("data 550", ("failed", 550)),
    ("data 554", ("failed", 554)),
    ("drop data", ("retry", None)),
]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one command at a time"])
@pytest.mark.parametrize(("fault", "expected"), FAULTS, ids=[fault for fault, _ in FAULTS])
def test_each_fault_ends_in_the_right_outcome_and_the_next_message_still_goes(smtp_server, fault, expected, pipelining) -> None:
    server = smtp_server()
    victim, other = message(1, "victim@example.org"), message(2, "other@example.org")
    stage, _, code = fault.partition(" ")
    if stage == "connect":
        server.faults.refuse_connections(1, int(code))
    elif stage == "drop":
        server.faults.drop_in_data("victim@example.org")
    elif stage == "mail":
        server.faults.mail(SENDER, int(code), times=1)
    else:
        getattr(server.faults, stage)("victim@example.org", int(code))
    with smtp_backend(server, connections=1, pipelining=pipelining) as backend:
        results = list(backend.send_messages([victim, other]))
    assert [(r.key, r.outcome, r.code) for r in results] == [("delivery-1", *expected), ("delivery-2", "sent", 250)]
    assert server.pipelined == ((1 if stage == "connect" else 2) if pipelining else 0), "MAIL, RCPT and DATA in one write"
    assert [r.recipients for r in server.received] == [("other@example.org",)]
    if stage in ("mail", "rcpt"):
        assert server.sessions == 1 and server.rsets == 1, "the connection is reused after an RSET"
    if stage == "data":
        assert server.sessions == 1 and server.rsets == 0, "the connection is reused (the refused data ended the transaction)"
    if stage == "drop":
        assert server.sessions == 2, "a dropped connection is replaced"


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one command at a time"])
def test_lines_of_dots_arrive_intact(smtp_server, pipelining) -> None:
    server = smtp_server()
    data = b".starts with a dot\r\nSubject: dots\r\n\r\n.\r\n..\r\nend. .\r\n.last line, no line end"
    results = list(smtp_backend(server, pipelining=pipelining).send_messages([message(1, data=data)]))
    assert [r.outcome for r in results] == ["sent"]
    assert server.received[0].data == data + b"\r\n"


def test_the_next_message_s_commands_go_out_with_the_data_before_it(smtp_server) -> None:
    """RFC 2920 3.1: one write and one round trip a message when messages are waiting, every message
    still whole, in its own transaction, each reported."""
    server = smtp_server(strict=True)
    messages = [message(n) for n in range(40)]
    with smtp_backend(server, connections=1) as backend:
        results = list(backend.send_messages(messages))
    assert [r.outcome for r in results] == ["sent"] * 40
    assert [(r.recipients, r.data) for r in server.received] == [(m.recipients, m.data) for m in messages]
    assert server.sessions == 1 and server.ahead >= 30, f"{server.ahead} of 40 sent ahead"


def test_a_refused_or_dropped_message_does_not_take_the_one_sent_ahead_with_it(smtp_server) -> None:
    server = smtp_server()
    server.faults.data("victim2@example.org", 554)
    server.faults.data("victim5@example.org", 451)
    server.faults.drop_in_data("victim8@example.org", times=1)
    messages = [message(n, f"victim{n}@example.org") for n in range(12)]
    with smtp_backend(server, connections=1) as backend:
        results = {r.key: (r.outcome, r.code) for r in backend.send_messages(messages)}
    assert results.pop("delivery-2") == ("failed", 554)
    assert results.pop("delivery-5") == ("retry", 451)
    assert results.pop("delivery-8") == ("retry", None)
    assert set(results.values()) == {("sent", 250)}
    assert sorted(r.recipients[0] for r in server.received) == sorted(
        f"victim{n}@example.org" for n in range(12) if n not in (2, 5, 8))
    assert server.ahead >= 6 and server.sessions == 2 and server.rsets == 0


def test_a_message_written_ahead_but_not_sent_never_reaches_anyone(smtp_server) -> None:
    """A connection whose next message's commands went out, but which is then asked for another
    message (the run stopped on a fatal error in between), starts again: the server, waiting for the
    first one's data, would otherwise take the other's commands and data as that data."""
    server = smtp_server(strict=True)
    backend = smtp_backend(server, connections=1)
    assert isinstance(backend, SmtpBackend)
    connection = _Connection(backend._resolve())
    first, ahead, other = message(1, "first@example.org"), message(2, "ahead@example.org"), message(3, "other@example.org")
    try:
        assert connection.send(first, ahead).outcome == "sent"
        assert connection.send(other).outcome == "sent"
    finally:
        connection.close()
    assert [(r.recipients, r.data) for r in server.received] == [(first.recipients, first.data), (other.recipients, other.data)]
    assert server.ahead == 1 and server.sessions == 2


def test_no_command_goes_ahead_of_the_message_that_ends_a_connection(smtp_server) -> None:
    server = smtp_server()
    with smtp_backend(server, connections=1, max_per_connection=3) as backend:
        results = list(backend.send_messages(message(n) for n in range(9)))
    assert [r.outcome for r in results] == ["sent"] * 9
    assert server.sessions == 3 and len(server.received) == 9


def test_a_server_without_pipelining_gets_one_command_at_a_time(smtp_server) -> None:
    server = smtp_server(pipelining=False)
    results = list(smtp_backend(server, connections=1).send_messages(message(n) for n in range(3)))
    assert [r.outcome for r in results] == ["sent"] * 3
    assert len(server.received) == 3 and server.pipelined == 0


def test_a_refused_sender_stops_the_run_instead_of_failing_every_subscriber(smtp_server) -> None:
    server = smtp_server()
    server.faults.mail(SENDER, 553)
    results = []
    with pytest.raises(MailError, match=f"refuses sender '{SENDER}': 553"):
        results.extend(smtp_backend(server).send_messages(message(n) for n in range(30)))
    assert results == [] and server.received == []


def test_a_temporary_refusal_is_sent_on_the_retry_and_arrives_once(smtp_server) -> None:
    server = smtp_server()
    server.faults.rcpt("reader1@example.org", 451, times=1)
    server.faults.drop_in_data("reader2@example.org", times=1)
    with smtp_backend(server, connections=2) as backend:
        first = {r.key: r.outcome for r in backend.send_messages(message(n) for n in range(1, 4))}
        retried = [message(int(key.split("-")[1])) for key, outcome in first.items() if outcome == "retry"]
        second = {r.key: r.outcome for r in backend.send_messages(retried)}
    assert first == {"delivery-1": "retry", "delivery-2": "retry", "delivery-3": "sent"}
    assert second == {"delivery-1": "sent", "delivery-2": "sent"}
    assert sorted(r.recipients[0] for r in server.received) == [f"reader{n}@example.org" for n in range(1, 4)]


def test_a_server_that_goes_down_gives_retries_then_takes_mail_again(smtp_server) -> None:
    server = smtp_server()
    with smtp_backend(server, connections=2) as backend:
        assert [r.outcome for r in backend.send_messages([message(1)])] == ["sent"]
        server.go_down()
        down = list(backend.send_messages([message(2), message(3)]))
        server.come_back()
        back = list(backend.send_messages([message(2), message(3)]))
    assert [(r.outcome, r.code) for r in down] == [("retry", None)] * 2
    assert all("refused" in r.reply for r in down)
    assert [r.outcome for r in back] == ["sent", "sent"]
    assert sorted(r.recipients[0] for r in server.received) == [f"reader{n}@example.org" for n in (1, 2, 3)]


def test_a_silent_server_times_out_into_a_retry(smtp_server) -> None:
    server = smtp_server()
    server.data_delay = 1.5
    [result] = smtp_backend(server, timeout=0.3).send_messages([message(1)])
    assert (result.outcome, result.code) == ("retry", None) and "timed out" in result.reply


def test_recipients_refused_among_several_are_reported(smtp_server) -> None:
    server = smtp_server()
    server.faults.rcpt("gone@example.org", 550)
    server.faults.rcpt("busy@example.org", 451)
    partly = message(1, "gone@example.org", "here@example.org")
    none = message(2, "gone@example.org", "busy@example.org")
    results = {r.key: r for r in smtp_backend(server, connections=1).send_messages([partly, none])}
    assert results["delivery-1"].outcome == "sent"
    assert [(r.address, r.code) for r in results["delivery-1"].refused] == [("gone@example.org", 550)]
    assert results["delivery-2"].outcome == "retry", "one temporary refusal means a later try may succeed"
    assert [r.recipients for r in server.received] == [("here@example.org",)]


# --- SMTP: connections, rate, stop ------------------------------------------------------------------------


@pytest.mark.timing
def test_parallel_connections_really_send_at_the_same_time(smtp_server) -> None:
    server = smtp_server()
    server.data_delay = 0.2
    started = time.monotonic()
    results = list(smtp_backend(server, connections=4).send_messages(message(n) for n in range(8)))
    elapsed = time.monotonic() - started
    assert [r.outcome for r in results] == ["sent"] * 8
    assert server.sessions == 4
    assert elapsed < 1.2, f"8 messages of 0.2 s over 4 connections took {elapsed:.2f} s: not parallel"


def test_connections_are_reused_up_to_max_per_connection(smtp_server) -> None:
    server = smtp_server()
    results = list(smtp_backend(server, connections=1, max_per_connection=5).send_messages(message(n) for n in range(20)))
    assert [r.outcome for r in results] == ["sent"] * 20
    assert server.sessions == 4
    per_session = [sum(1 for r in server.received if r.session == s) for s in range(1, 5)]
    assert per_session == [5, 5, 5, 5]
    assert {r.ehlo for r in server.received} == {"sender.test"}


@pytest.mark.timing
def test_the_rate_limit_holds_across_all_connections(smtp_server) -> None:
    server = smtp_server()
    started = time.monotonic()
    results = list(smtp_backend(server, connections=4, rate=20).send_messages(message(n) for n in range(11)))
    elapsed = time.monotonic() - started
    assert len(results) == 11
    assert 0.45 <= elapsed <= 2.0, f"11 messages at 20/s took {elapsed:.2f} s (expected about 0.5 s)"


@pytest.mark.timing
def test_stop_during_a_slow_rate_ends_promptly(smtp_server) -> None:
    server = smtp_server()
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    results = list(smtp_backend(server, rate=5).send_messages((message(n) for n in range(100)), stop=stop))
    assert time.monotonic() - started < 1.0
    assert 1 <= len(results) <= 3 and len(server.received) == len(results)


def test_a_caller_that_stops_listening_leaves_the_rest_unsent(smtp_server) -> None:
    server = smtp_server()
    with smtp_backend(server, connections=1) as backend:
        for _ in backend.send_messages(message(n) for n in range(100)):
            break
        later = list(backend.send_messages([message(500)]))
    assert later[0].outcome == "sent"
    received = {r.recipients[0] for r in server.received}
    # The one reported, then at most the window the backend had been handed (those the connection had
    # begun, or taken to send next, are finished; the others never leave): not the other 90 and more.
    assert "reader500@example.org" in received and len(received) <= 1 + WINDOW_PER_CONNECTION + 1


def test_console_backend_writes_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    [result] = ConsoleBackend().send_messages([message(1)])
    out = capsys.readouterr().out
    assert result.outcome == "sent"
    assert "Envelope-To: reader1@example.org\nFrom: Syndicate" in out and "Hello 1\n" in out and "\r" not in out

"""The SMTP backend: parallel reused connections, an optional global rate, every server reply a SendResult.

The only module that imports smtplib and ssl.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from syndicate.config import SmtpSettings, read_secret
from syndicate.errors import MailAuthError, MailError, MailSecurityError, UsageError
from syndicate.mail.base import MailBackend, Outcome, OutgoingMessage, RecipientRefusal, SendResult

log = logging.getLogger(__name__)

# Messages handed to the connections but not yet reported, per connection: enough to keep every
# connection busy while the caller claims, checks and builds the next ones (a claim is a database
# round trip), small enough to stay flat. 8 rather than 2: +9% messages a second for
# `syndicate worker` against smtp-sink (bench/RESULTS.md, #14 session 9).
WINDOW_PER_CONNECTION = 8
SMTPUTF8_RECHECK = 600.0  # seconds an answer to "does the server offer SMTPUTF8?" is kept ([smtp] smtputf8 = "auto")


@dataclass(frozen=True)
class _Endpoint:
    """Everything a connection needs, resolved once at open()."""

    host: str
    port: int
    security: str
    timeout: float
    ehlo_name: str
    context: ssl.SSLContext | None
    username: str | None
    password: str | None
    max_per_connection: int
    pipelining: bool

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class _Fatal:
    """A worker met an error that concerns the whole backend (login, TLS) or a bug."""

    error: BaseException


_SKIPPED = object()  # a message a worker did not attempt because the run is aborting
_NOTHING = object()  # nothing was waiting in the queue


class _StaleConnection(Exception):
    """A reused connection was already gone when a new transaction began: reconnect and try again."""


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", errors="replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


def _outcome(code: int) -> Outcome:
    """2xx accepted, 5xx permanent; 4xx and anything unexpected may succeed later."""
    if 200 <= code < 300:
        return "sent"
    return "failed" if 500 <= code < 600 else "retry"


def _result(
    message: OutgoingMessage, code: int | None, reply: str, refused: tuple[RecipientRefusal, ...] = ()
) -> SendResult:
    outcome: Outcome = "retry" if code is None else _outcome(code)
    return SendResult(message.key, message.message_id, outcome, code, reply, refused)


class _Connection:
    """One SMTP connection owned by one worker thread, reused across messages."""

    def __init__(self, endpoint: _Endpoint) -> None:
        self._endpoint = endpoint
        self._smtp: smtplib.SMTP | None = None
        self._count = 0
        self._written: OutgoingMessage | None = None  # its MAIL, RCPT and DATA went out with the data before it

    def send(self, message: OutgoingMessage, following: OutgoingMessage | None = None) -> SendResult:
        """Deliver one message; connection trouble is a `retry` result, login/TLS trouble a MailError.
        `following`: the message this connection sends next, whose commands may go out with this
        one's data (RFC 2920 3.1); the next call must then be for it."""
        if self._written is not None and self._written is not message:  # it was not sent after all (a stop):
            self._discard()  # the server waits for its data, so the connection cannot go on
        while True:
            fresh = self._smtp is None
            try:
                if fresh:
                    self._connect()
                return self._transaction(message, fresh, following)
            except _StaleConnection:
                self._discard()
            except (smtplib.SMTPException, OSError) as e:  # no transaction (or no reply to it): try later
                self._discard()
                if isinstance(e, smtplib.SMTPResponseException):
                    return SendResult(message.key, message.message_id, "retry", e.smtp_code, _text(e.smtp_error))
                return SendResult(message.key, message.message_id, "retry", None, _describe(e))

    def close(self) -> None:
        if self._written is not None:  # the server waits for that message's data: a QUIT would be taken for it
            self._discard()
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._discard()

    def _discard(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = None
        self._count = 0
        self._written = None

    def _connect(self) -> None:
        endpoint = self._endpoint
        try:
            # Given the host, the constructor connects (and reads the greeting); it leaves no socket open on failure.
            smtp: smtplib.SMTP
            if endpoint.security == "tls":
                smtp = smtplib.SMTP_SSL(endpoint.host, endpoint.port, endpoint.ehlo_name, timeout=endpoint.timeout,
                                        context=endpoint.context)
            else:
                smtp = smtplib.SMTP(endpoint.host, endpoint.port, endpoint.ehlo_name, timeout=endpoint.timeout)
            self._smtp = smtp
            smtp.ehlo_or_helo_if_needed()
            if endpoint.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise MailSecurityError(endpoint.label, "the server does not offer STARTTLS")
                smtp.starttls(context=endpoint.context)
                smtp.ehlo()
        except ssl.SSLCertVerificationError as e:
            self._discard()
            raise MailSecurityError(endpoint.label, f"certificate not trusted: {e.verify_message or e}") from e
        except MailError:
            self._discard()
            raise
        if endpoint.username is not None:
            self._login(smtp)
        log.debug("smtp connected server=%s security=%s", endpoint.label, endpoint.security)

    def _login(self, smtp: smtplib.SMTP) -> None:
        endpoint = self._endpoint
        assert endpoint.username is not None and endpoint.password is not None
        try:
            smtp.login(endpoint.username, endpoint.password)
        except smtplib.SMTPAuthenticationError as e:
            if 400 <= e.smtp_code < 500:
                raise  # a temporary failure: the message is retried
            self._discard()
            raise MailAuthError(endpoint.label, endpoint.username, f"{e.smtp_code} {_text(e.smtp_error)}") from e
        except smtplib.SMTPNotSupportedError as e:
            self._discard()
            raise MailAuthError(endpoint.label, endpoint.username, "the server offers no AUTH on this connection") from e
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPException as e:  # "No suitable authentication method found."
            self._discard()
            raise MailAuthError(endpoint.label, endpoint.username, str(e)) from e

    def offers_smtputf8(self) -> bool:
        """Whether the server offers SMTPUTF8 (connecting, with STARTTLS and login as configured)."""
        if self._smtp is None:
            self._connect()
        assert self._smtp is not None
        return bool(self._smtp.has_extn("smtputf8"))

    def _transaction(self, message: OutgoingMessage, fresh: bool, following: OutgoingMessage | None = None) -> SendResult:
        smtp = self._smtp
        assert smtp is not None
        if not _ascii_envelope(message) and not smtp.has_extn("smtputf8"):
            # smtplib would fail to encode the command; no transaction is begun.
            return SendResult(
                message.key, message.message_id, "failed", None,
                f"the server {self._endpoint.label} does not offer SMTPUTF8 (RFC 6531): it cannot deliver to "
                f"{', '.join(a for a in (message.sender, *message.recipients) if not a.isascii())}; "
                "set [smtp] smtputf8 = \"auto\" or \"no\" so such addresses are refused at sign-up",
            )
        if self._pipelines(smtp, message):
            return self._pipelined(smtp, message, fresh, following)
        try:
            code, reply = smtp.mail(message.sender, self._mail_options(smtp, message))
        except smtplib.SMTPServerDisconnected:
            if fresh:
                raise
            raise _StaleConnection() from None
        if code != 250:
            return self._mail_refused(message, code, reply)
        accepted, refused = self._recipients(smtp, message)
        if not accepted:
            return self._all_refused(message, refused)
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        return self._body(smtp, message, code, reply, refused)

    def _pipelines(self, smtp: smtplib.SMTP, message: OutgoingMessage) -> bool:
        return self._endpoint.pipelining and smtp.has_extn("pipelining") and _ascii_envelope(message)

    def _commands(self, smtp: smtplib.SMTP, message: OutgoingMessage) -> bytes:
        """MAIL FROM, every RCPT TO and DATA, as one pipelined group."""
        options = "".join(f" {option}" for option in self._mail_options(smtp, message))
        commands = [f"MAIL FROM:<{message.sender}>{options}"]  # bare addresses (OutgoingMessage): the path as RFC 5321 writes it
        commands += [f"RCPT TO:<{address}>" for address in message.recipients]
        return ("\r\n".join([*commands, "DATA"]) + "\r\n").encode("ascii")

    def _pipelined(self, smtp: smtplib.SMTP, message: OutgoingMessage, fresh: bool,
                   following: OutgoingMessage | None = None) -> SendResult:
        """RFC 2920: MAIL FROM, every RCPT TO and DATA in one write (or with the data before, see
        _body), then their replies in order."""
        written, self._written = self._written is message, None
        try:
            if not written:
                smtp.send(self._commands(smtp, message))
            code, reply = smtp.getreply()
        except smtplib.SMTPServerDisconnected:
            if fresh:
                raise
            raise _StaleConnection() from None
        *replies, (data_code, data_reply) = self._replies(smtp, len(message.recipients) + 1)
        if data_code == 354:  # a server that took DATA with no recipient: only a closed connection ends it
            if code != 250 or not any(c in (250, 251) for c, _ in replies):
                self._discard()
                return _result(message, None, "DATA accepted without a recipient: connection dropped")
        if code != 250:
            return self._mail_refused(message, code, reply)
        refused = [RecipientRefusal(a, c, _text(r)) for a, (c, r) in zip(message.recipients, replies) if c not in (250, 251)]
        if len(refused) == len(message.recipients):
            return self._all_refused(message, refused)
        return self._body(smtp, message, data_code, data_reply, refused, following)

    def _replies(self, smtp: smtplib.SMTP, count: int) -> list[tuple[int, bytes]]:
        """The next `count` replies; those a closed connection never gave count as 421 (closing)."""
        replies: list[tuple[int, bytes]] = []
        try:
            while len(replies) < count:
                replies.append(smtp.getreply())
        except smtplib.SMTPServerDisconnected:
            self._discard()
            replies += [(421, b"connection closed before this reply")] * (count - len(replies))
        return replies

    def _mail_refused(self, message: OutgoingMessage, code: int, reply: bytes) -> SendResult:
        self._reset(code)
        self._check_sender_refusal(message, code, _text(reply))
        return _result(message, code, f"MAIL FROM refused: {code} {_text(reply)}")

    def _body(
        self, smtp: smtplib.SMTP, message: OutgoingMessage, code: int, reply: bytes, refused: list[RecipientRefusal],
        following: OutgoingMessage | None = None,
    ) -> SendResult:
        """After DATA's reply: the message itself (dot-stuffed), then its final reply. The commands of
        `following` go out in the same write (RFC 2920 3.1: the data may begin a group) unless this
        message ends the connection: one round trip a message instead of two."""
        if code != 354:  # DATA itself refused
            self._reset(code)
            return _result(message, code, f"DATA refused: {code} {_text(reply)}")
        data = _data_lines(message.data)
        if following is not None and self._count + 1 < self._endpoint.max_per_connection and self._pipelines(smtp, following):
            smtp.send(data + self._commands(smtp, following))
            self._written = following  # its replies come after this message's final one, whatever that is
        else:
            smtp.send(data)
        code, reply = smtp.getreply()
        if not 200 <= code < 300:
            if code == 421:  # the server is leaving; no RSET otherwise: the reply to the data ended the transaction
                self._discard()
            return _result(message, code, f"DATA refused: {code} {_text(reply)}")
        self._count += 1
        if self._count >= self._endpoint.max_per_connection:
            self.close()
        return _result(message, code, _text(reply), refused=tuple(refused))

    def _check_sender_refusal(self, message: OutgoingMessage, code: int, reply: str) -> None:
        """A permanent refusal of MAIL FROM is about our login or sender, not this recipient: stop the run.

        Reporting it as this message's failure would count a hard failure against every
        subscriber in turn (and bounce them) for what is a configuration problem.
        """
        if not 500 <= code < 600:
            return
        endpoint = self._endpoint
        if code == 530 or (endpoint.username is None and "auth" in reply.lower()):
            raise MailAuthError(endpoint.label, endpoint.username or "(none)", f"{code} {reply}")
        raise MailError(
            f"SMTP server {endpoint.label} refuses sender {message.sender!r}: {code} {reply}",
            hint="check [mail] from and that the server lets this account send as that address",
        )

    def _recipients(self, smtp: smtplib.SMTP, message: OutgoingMessage) -> tuple[list[str], list[RecipientRefusal]]:
        accepted: list[str] = []
        refused: list[RecipientRefusal] = []
        for address in message.recipients:
            code, reply = smtp.rcpt(address)
            if code in (250, 251):
                accepted.append(address)
            else:
                refused.append(RecipientRefusal(address, code, _text(reply)))
                if code == 421:  # the server is closing the connection: no point asking further
                    break
        return accepted, refused

    def _all_refused(self, message: OutgoingMessage, refused: list[RecipientRefusal]) -> SendResult:
        """No recipient accepted: failed only if every recipient got a 5xx, else retry."""
        permanent = len(refused) == len(message.recipients) and all(_outcome(r.code) == "failed" for r in refused)
        first = refused[0] if permanent else next((r for r in refused if _outcome(r.code) != "failed"), refused[0])
        self._reset(421 if any(r.code == 421 for r in refused) else first.code)
        reply = "; ".join(f"RCPT {r.address} refused: {r.code} {r.reply}" for r in refused)
        outcome: Outcome = "failed" if permanent else "retry"
        return SendResult(message.key, message.message_id, outcome, first.code, reply, tuple(refused))

    def _reset(self, code: int | None) -> None:
        """After a refusal: RSET so the next message starts clean; drop the connection if the server is leaving."""
        if code == 421 or self._smtp is None:
            self._discard()
            return
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._discard()

    @staticmethod
    def _mail_options(smtp: smtplib.SMTP, message: OutgoingMessage) -> list[str]:
        options = []
        if not message.data.isascii() and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not all(address.isascii() for address in (message.sender, *message.recipients)) and smtp.has_extn("smtputf8"):
            options.append("SMTPUTF8")
        return options


def _ascii_envelope(message: OutgoingMessage) -> bool:
    return message.sender.isascii() and all(address.isascii() for address in message.recipients)


def _data_lines(data: bytes) -> bytes:
    """The message as DATA sends it, as smtplib.data sends bytes: a dot doubled at the start of a
    line, then CRLF.CRLF. The bytes are otherwise passed as they are (a bare LF is the builder's
    bug, for the server to refuse). Our messages rarely start a line with a dot: then it is one
    C-level scan and one copy (smtplib.data runs a regex over the whole message)."""
    if data.startswith(b".") or b"\n." in data:
        data = (b"." if data.startswith(b".") else b"") + data.replace(b"\n.", b"\n..")
    return data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n")


def _describe(error: BaseException) -> str:
    """A one-line reason for a connection-level failure."""
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"timed out: {error}"
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return f"connection lost: {error}"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused: {error}"
    return f"{type(error).__name__}: {error}"


class _Pacer:
    """The global rate: one message every 1/rate seconds across all connections (a token bucket of one)."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    def delay(self) -> float:
        return max(0.0, self._next - time.monotonic()) if self._interval else 0.0

    def take(self) -> None:
        if self._interval:
            self._next = max(self._next, time.monotonic()) + self._interval


@dataclass
class _Run:
    """The state of one send_messages call: its source, its own reply queue, what is in flight."""

    source: Iterator[OutgoingMessage]
    stop: threading.Event | None
    window: int
    pacer: _Pacer
    results: queue.SimpleQueue[object] = field(default_factory=queue.SimpleQueue)
    pending: int = 0
    feeding: bool = True
    fatal: BaseException | None = None


class SmtpBackend(MailBackend):
    """Sends over `connections` parallel SMTP connections, one worker thread each.

    The caller's iterable is read in the caller's thread, a few messages ahead of the
    results (bounded); each result is yielded as soon as its reply is in, in completion
    order. Login and certificate failures raise MailAuthError / MailSecurityError once
    the results already known have been yielded.
    """

    name = "smtp"

    def __init__(self, options: SmtpSettings, *, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.options = options
        self._environ = environ
        self._endpoint: _Endpoint | None = None
        self._work: queue.SimpleQueue[tuple[OutgoingMessage, queue.SimpleQueue[object]] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._abort = threading.Event()
        self._busy = threading.Lock()
        self._utf8: tuple[float, bool] | None = None  # (when asked, whether the server offers SMTPUTF8)
        self._utf8_lock = threading.Lock()

    @property
    def server(self) -> str:
        return f"{self.options.host}:{self.options.port}"

    def carries_utf8_addresses(self) -> bool:
        """`[smtp] smtputf8`: "yes" or "no" as configured; "auto" asks the server (EHLO) and keeps the
        answer for SMTPUTF8_RECHECK seconds. MailError (or OSError, smtplib's errors) when it cannot be asked."""
        setting = self.options.smtputf8
        if setting != "auto":
            return setting == "yes"
        with self._utf8_lock:
            if self._utf8 is not None and time.monotonic() - self._utf8[0] < SMTPUTF8_RECHECK:
                return self._utf8[1]
            connection = _Connection(self._resolve())
            try:
                offered = connection.offers_smtputf8()
            finally:
                connection.close()
            self._utf8 = (time.monotonic(), offered)
            log.info("smtp server=%s smtputf8=%s", self.server, "offered" if offered else "not offered")
            return offered

    def open(self) -> None:
        if self.is_open:
            return
        self._endpoint = self._resolve()
        self._abort.clear()
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"smtp-{index}", daemon=True)
            for index in range(self.options.connections)
        ]
        for worker in self._workers:
            worker.start()
        super().open()

    def close(self) -> None:
        if not self.is_open:
            return
        for _ in self._workers:
            self._work.put(None)
        for worker in self._workers:
            worker.join()
        self._workers = []
        super().close()

    def _resolve(self) -> _Endpoint:
        options = self.options
        password = None
        if options.username:
            password = read_secret(options.password_env, f"[smtp] password for {options.username}", self._environ)
        return _Endpoint(
            host=options.host,
            port=options.port,
            security=options.security,
            timeout=options.timeout,
            ehlo_name=options.ehlo_name or socket.getfqdn(),
            context=self._tls_context() if options.security != "none" else None,
            username=options.username or None,
            password=password,
            max_per_connection=options.max_per_connection,
            pipelining=options.pipelining,
        )

    def _tls_context(self) -> ssl.SSLContext:
        """Verifying context: the system CAs, or only `ca_file` when it is set."""
        ca_file = self.options.ca_file
        try:
            return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as e:
            raise MailError(
                f"[smtp] ca_file {ca_file}: cannot load CA certificates: {e}",
                hint="ca_file must be a PEM file of CA certificates",
            ) from e

    def _work_loop(self) -> None:
        """Send what the queue holds; a message already waiting behind the current one is taken with
        it, so that its commands go out with the current one's data (_Connection._body)."""
        assert self._endpoint is not None
        connection = _Connection(self._endpoint)
        try:
            item = self._work.get()
            while item is not None:
                message, results = item
                try:
                    after: tuple[OutgoingMessage, queue.SimpleQueue[object]] | None | object = self._work.get_nowait()
                except queue.Empty:
                    after = _NOTHING
                if self._abort.is_set():
                    results.put(_SKIPPED)
                else:
                    following = after[0] if isinstance(after, tuple) else None
                    try:
                        results.put(connection.send(message, following))
                    except BaseException as e:  # login/TLS trouble, or a bug: the run stops, the caller hears of it
                        self._abort.set()
                        results.put(_Fatal(e))
                item = self._work.get() if after is _NOTHING else after  # type: ignore[assignment]
        finally:
            connection.close()

    def send_messages(
        self, messages: Iterable[OutgoingMessage], *, stop: threading.Event | None = None
    ) -> Iterator[SendResult]:
        if not self._busy.acquire(blocking=False):
            raise UsageError("SmtpBackend.send_messages: another send on this backend is still running")
        opened_here = not self.is_open
        run = _Run(iter(messages), stop, WINDOW_PER_CONNECTION * self.options.connections, _Pacer(self.options.rate))
        try:
            if opened_here:
                self.open()
            self._abort.clear()
            while (item := self._next_reply(run)) is not None:
                if isinstance(item, SendResult):
                    self._log(item)
                    yield item
                elif isinstance(item, _Fatal):
                    run.fatal = run.fatal or item.error
            if run.fatal is not None:
                raise run.fatal
        finally:
            self._take_back(run)
            if opened_here:
                self.close()
            self._busy.release()

    def _next_reply(self, run: _Run) -> object | None:
        """Hand messages to the workers as the window and the rate allow; the next worker reply, or None at the end."""
        while True:
            run.feeding = run.feeding and run.fatal is None and not (run.stop is not None and run.stop.is_set())
            if not run.feeding and not run.pending:
                return None
            wait = None
            if run.feeding and run.pending < run.window:
                wait = run.pacer.delay()
                if wait <= 0:
                    message = next(run.source, None)
                    if message is None:
                        run.feeding = False
                    else:
                        run.pacer.take()
                        self._work.put((message, run.results))
                        run.pending += 1
                    continue
                if not run.pending:
                    if run.stop is not None:
                        run.stop.wait(wait)
                    else:
                        time.sleep(wait)
                    continue
            try:
                item = run.results.get(timeout=wait)
            except queue.Empty:
                continue
            run.pending -= 1
            return item

    def _take_back(self, run: _Run) -> None:
        """The caller stopped listening early: unstarted messages go back, in-flight ones finish unreported."""
        while run.pending:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is None:  # never happens while a send runs; keep the sentinel anyway
                self._work.put(None)
                break
            run.pending -= 1
        for _ in range(run.pending):
            run.results.get()
        run.pending = 0

    @staticmethod
    def _log(result: SendResult) -> None:
        if result.outcome == "sent":
            log.debug("smtp sent key=%s message_id=%s code=%s", result.key, result.message_id, result.code)
        else:
            log.warning(
                "smtp %s key=%s message_id=%s code=%s reply=%s",
                result.outcome, result.key, result.message_id, result.code, result.reply,
            )

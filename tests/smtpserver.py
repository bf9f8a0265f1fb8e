"""A real aiosmtpd server on 127.0.0.1 (port 0) for tests: records what it receives, and misbehaves on request.

    with SmtpTestServer(security="starttls", cert=leaf, username="ann", password="pw") as server:
        server.faults.rcpt("slow@example.org", 451, times=1)   # 451 once, then accept
        ...send to server.port...
        assert server.received[0].data == message_bytes

Fault modes (`server.faults`): 421 on connect; a chosen code after MAIL for a sender, after
RCPT or after DATA for chosen recipients; the connection dropped during DATA; `go_down()` / `come_back()`
(refused connections, then the same port again); `strict=True` rejects lines over 998
bytes and bare CR/LF in the message; `data_delay` makes it slow to answer DATA. It offers PIPELINING
(RFC 2920) unless `pipelining=False`, and SMTPUTF8 (RFC 6531) unless `smtputf8=False`; it counts in
`pipelined` the transactions whose RCPT TO and DATA had already arrived with their MAIL FROM.
Fixtures: `tls_ca`, `smtp_server` (a factory).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One message the server accepted (answered 250 to its DATA)."""

    session: int
    sender: str
    recipients: tuple[str, ...]
    options: tuple[str, ...]
    data: bytes
    tls: bool
    user: str | None
    ehlo: str | None


@dataclass
class _Rule:
    code: int
    times: int | None  # None: every time

    def fire(self) -> bool:
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


@dataclass
class Faults:
    """What the server is told to get wrong; safe to change from the test thread while it runs."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connect: list[_Rule] = field(default_factory=list)
    _mail: dict[str, _Rule] = field(default_factory=dict)
    _rcpt: dict[str, _Rule] = field(default_factory=dict)
    _data: dict[str, _Rule] = field(default_factory=dict)
    _drop: dict[str, _Rule] = field(default_factory=dict)

    def refuse_connections(self, times: int, code: int = 421) -> None:
        """Greet the next `times` connections with `code` and hang up."""
        with self._lock:
            self._connect.append(_Rule(code, times))

    def mail(self, address: str, code: int, times: int | None = None) -> None:
        """Answer MAIL FROM:<address> with `code` (`times` times, or always)."""
        with self._lock:
            self._mail[address.lower()] = _Rule(code, times)

    def rcpt(self, address: str, code: int, times: int | None = None) -> None:
        """Answer RCPT TO:<address> with `code` (`times` times, or always)."""
        with self._lock:
            self._rcpt[address.lower()] = _Rule(code, times)

    def data(self, address: str, code: int, times: int | None = None) -> None:
        """Answer the end of DATA with `code` for messages to `address`."""
        with self._lock:
            self._data[address.lower()] = _Rule(code, times)

    def drop_in_data(self, address: str, times: int | None = None) -> None:
        """Receive the whole message to `address`, then cut the connection without a reply."""
        with self._lock:
            self._drop[address.lower()] = _Rule(0, times)

    def clear(self) -> None:
        with self._lock:
            self._connect.clear()
            self._mail.clear()
            self._rcpt.clear()
            self._data.clear()
            self._drop.clear()

    def connect_code(self) -> int | None:
        with self._lock:
            return next((rule.code for rule in self._connect if rule.fire()), None)

    def code_for(self, table: str, addresses: Any) -> int | None:
        with self._lock:
            rules = getattr(self, f"_{table}")
            for address in addresses:
                rule = rules.get(address.lower())
                if rule is not None and rule.fire():
                    return rule.code
        return None


class _Refuser(asyncio.Protocol):
    """Greets with an error code and hangs up (a server out of capacity)."""

    def __init__(self, code: int) -> None:
        self.code = code

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(f"{self.code} 4.3.2 smtp.test service not available, closing channel\r\n".encode())
        transport.close()


class _Handler:
    """aiosmtpd hooks: faults first, then strict checks, then record."""

    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server

    async def handle_EHLO(self, smtp: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, smtp: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        # What the client sent after MAIL FROM and the server has not read yet (aiosmtpd reads line by line).
        if b"\r\nDATA\r\n" in bytes(smtp._reader._buffer):  # type: ignore[attr-defined]
            with self.server.lock:
                self.server.pipelined += 1
        code = self.server.faults.code_for("mail", [address])
        if code is not None:
            return f"{code} {'4.3.0 try again later' if code < 500 else '5.7.1 sender not allowed'}: <{address}>"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, smtp: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        code = self.server.faults.code_for("rcpt", [address])
        if code is not None:
            return f"{code} {'4.2.1 try again later' if code < 500 else '5.1.1 no such user'}: <{address}>"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_RSET(self, smtp: SMTP, session: Any, envelope: Any) -> str:
        with self.server.lock:
            self.server.rsets += 1
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Any, envelope: Any) -> str:
        # The next message's commands already read with this one's data (RFC 2920 3.1).
        if b"MAIL FROM:" in bytes(smtp._reader._buffer):  # type: ignore[attr-defined]
            with self.server.lock:
                self.server.ahead += 1
        if self.server.data_delay:
            await asyncio.sleep(self.server.data_delay)
        if self.server.faults.code_for("drop", envelope.rcpt_tos) is not None:
            assert smtp.transport is not None
            smtp.transport.abort()
            await asyncio.sleep(3600)  # cancelled by connection_lost: no reply ever goes out
        problem = _strict_problem(envelope.original_content) if self.server.strict else None
        if problem:
            return problem
        code = self.server.faults.code_for("data", envelope.rcpt_tos)
        if code is not None:
            return f"{code} {'4.3.0 try again later' if code < 500 else '5.7.1 message refused'}"
        return self.server.record(session, envelope)


def _strict_problem(data: bytes) -> str | None:
    """What a strict server (RFC 5322 2.1.1, RFC 5321 2.3.8) says about this message, if anything."""
    lines = data.split(b"\r\n")
    for number, line in enumerate(lines, 1):
        if b"\n" in line or b"\r" in line:
            return f"550 5.6.0 bare CR or LF in line {number}"
        if len(line) > 998:
            return f"550 5.6.0 line {number} is {len(line)} octets long (limit 998)"
    return None


class SmtpTestServer:
    """An aiosmtpd server in its own thread and event loop; a context manager."""

    def __init__(
        self,
        *,
        security: str = "none",
        cert: trustme.LeafCert | None = None,
        username: str | None = None,
        password: str | None = None,
        strict: bool = False,
        pipelining: bool = True,
        smtputf8: bool = True,
    ) -> None:
        if security != "none" and cert is None:
            raise ValueError("a TLS test server needs a certificate")
        self.security = security
        self.cert = cert
        self.username = username
        self.password = password
        self.strict = strict
        self.pipelining = pipelining
        self.smtputf8 = smtputf8  # offer SMTPUTF8 (RFC 6531) in EHLO
        self.pipelined = 0
        self.ahead = 0  # messages whose data came with the next message's MAIL FROM, RCPT TO and DATA
        self.data_delay = 0.0  # seconds to think before answering DATA (a slow server)
        self.faults = Faults()
        self.lock = threading.Lock()
        self.port = 0
        self.sessions = 0
        self.peak_sessions = 0  # the most sessions open at once
        self.rsets = 0
        self._received: list[Received] = []
        self._live: set[SMTP] = set()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    @property
    def received(self) -> list[Received]:
        with self.lock:
            return list(self._received)

    def __enter__(self) -> SmtpTestServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-test-server", daemon=True)
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        if self._thread is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._thread = None

    def go_down(self) -> None:
        """Stop listening and cut every open connection: clients see refused or dropped connections."""
        self._call(self._shutdown())

    def come_back(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def record(self, session: Any, envelope: Any) -> str:
        with self.lock:
            self._received.append(
                Received(
                    session=session.number,
                    sender=envelope.mail_from,
                    recipients=tuple(envelope.rcpt_tos),
                    options=tuple(envelope.mail_options),
                    data=envelope.original_content,
                    tls=session.ssl is not None or self.security == "tls",
                    user=session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
                    ehlo=session.host_name,
                )
            )
            return f"250 2.0.0 OK queued as {len(self._received)}"

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        context = self._tls_context() if self.security == "tls" else None
        self._server = await self._loop.create_server(self._protocol, HOST, self.port, ssl=context, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for smtp in list(self._live):
            if smtp.transport is not None:
                smtp.transport.abort()
        self._live.clear()
        await asyncio.sleep(0.01)

    def _protocol(self) -> asyncio.BaseProtocol:
        code = self.faults.connect_code()
        if code is not None:
            return _Refuser(code)
        with self.lock:
            self.sessions += 1
            number = self.sessions
        with warnings.catch_warnings():
            # Implicit TLS: aiosmtpd cannot tell the transport is already TLS, and warns about AUTH without it.
            warnings.simplefilter("ignore", UserWarning)
            smtp = self._session(number)
        self._live.add(smtp)
        self.peak_sessions = max(self.peak_sessions, len(self._live))
        return smtp

    def _session(self, number: int) -> SMTP:
        return _SessionSMTP(
            _Handler(self),
            number=number,
            on_close=self._live.discard,
            hostname="smtp.test",
            enable_SMTPUTF8=self.smtputf8,
            loop=self._loop,
            tls_context=self._tls_context() if self.security == "starttls" else None,
            require_starttls=self.security == "starttls",
            authenticator=self._authenticate if self.username else None,
            auth_required=bool(self.username),
            auth_require_tls=self.security == "starttls",
        )

    def _tls_context(self) -> ssl.SSLContext:
        assert self.cert is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context

    def _authenticate(self, smtp: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


class _SessionSMTP(SMTP):
    """aiosmtpd's SMTP, numbering its session and telling the server when it ends."""

    def __init__(self, handler: Any, *, number: int, on_close: Callable[[SMTP], None], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.number = number
        self._on_close = on_close

    def _create_session(self) -> Any:
        session = super()._create_session()
        session.number = self.number
        return session

    def connection_lost(self, error: Exception | None) -> None:
        self._on_close(self)
        super().connection_lost(error)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway CA; `tls_ca.issue_cert("localhost", "127.0.0.1")` makes a server certificate."""
    return trustme.CA()


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SmtpTestServer]]:
    """A factory of started SmtpTestServers (same arguments), all stopped at teardown."""
    servers: list[SmtpTestServer] = []

    def start(**kwargs: Any) -> SmtpTestServer:
        server = SmtpTestServer(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def write_ca(ca: trustme.CA, folder: Path) -> Path:
    """The CA certificate as a PEM file, for `[smtp] ca_file`."""
    path = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path

"""The mail backend contract: messages in, one SendResult per message out, failures as results."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Literal

from syndicate.errors import UsageError

Outcome = Literal["sent", "retry", "failed"]
_NOT_BARE = re.compile(r"[<>\x00-\x20\x7f]")  # angle brackets, space, line breaks, controls


@dataclass(frozen=True)
class OutgoingMessage:
    """One complete message to hand to a server.

    `key` is the caller's delivery id (opaque here); `sender` the bare envelope-from
    address and `recipients` bare addresses (`user@example.org`, never `Name <...>`: a backend
    writes `<address>` as it is); `data` the whole RFC 5322 message with CRLF line ends, already built.
    """

    key: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    message_id: str

    def __post_init__(self) -> None:
        if isinstance(self.recipients, str) or not self.recipients:
            raise UsageError(f"message {self.key}: recipients must be a non-empty tuple of addresses")
        for address in (self.sender, *self.recipients):
            if _NOT_BARE.search(address):
                raise UsageError(f"message {self.key}: {address!r} is not a bare address (no name, angle brackets, "
                                 "spaces or line breaks)")


@dataclass(frozen=True)
class RecipientRefusal:
    """A recipient the server refused while it accepted the message for others."""

    address: str
    code: int
    reply: str


@dataclass(frozen=True)
class SendResult:
    """What became of one message.

    `sent` only once the server (or folder, stream, list) accepted the whole message;
    `retry` for temporary failures (4xx, connection lost, timeout) that may succeed later;
    `failed` for permanent refusals (5xx). `refused` lists recipients refused while the
    message went to the others (the outcome is then `sent`).
    """

    key: str
    message_id: str
    outcome: Outcome
    code: int | None
    reply: str
    refused: tuple[RecipientRefusal, ...] = ()


def until_stopped(messages: Iterable[OutgoingMessage], stop: threading.Event | None) -> Iterator[OutgoingMessage]:
    """Pull messages one at a time, and none once `stop` is set."""
    source = iter(messages)
    while stop is None or not stop.is_set():
        try:
            yield next(source)
        except StopIteration:
            return


class MailBackend:
    """Base of every backend, shaped like Django's BaseEmailBackend without fail_silently.

    Use it as a context manager (or call open() and close()); send_messages() opens
    and closes it by itself when it is not open. Every message taken from the iterable
    gets exactly one SendResult, yielded as soon as it is known; the only exceptions are
    MailError subclasses saying the backend cannot work at all (bad login, untrusted
    certificate), raised after the results already known have been yielded.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    def __enter__(self) -> MailBackend:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def send_messages(
        self, messages: Iterable[OutgoingMessage], *, stop: threading.Event | None = None
    ) -> Iterator[SendResult]:
        """Deliver each message in turn (lazily), yielding its result; no new message once `stop` is set."""
        opened_here = not self._open
        if opened_here:
            self.open()
        try:
            for message in until_stopped(messages, stop):
                yield self.deliver(message)
        finally:
            if opened_here:
                self.close()

    def carries_utf8_addresses(self) -> bool:
        """Whether it can deliver to an address whose local part is not ASCII (SMTPUTF8). Those
        that write the message somewhere (file, console, memory) carry every address."""
        return True

    def deliver(self, message: OutgoingMessage) -> SendResult:
        """Deliver one message; backends that deliver one at a time implement only this."""
        raise NotImplementedError


def sent(message: OutgoingMessage, reply: str, code: int | None = None) -> SendResult:
    return SendResult(message.key, message.message_id, "sent", code, reply)

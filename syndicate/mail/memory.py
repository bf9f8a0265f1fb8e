"""The memory backend: messages kept on the backend instance, for tests."""

from __future__ import annotations

from syndicate.mail.base import MailBackend, OutgoingMessage, SendResult, sent


class MemoryBackend(MailBackend):
    """Appends every message to `self.outbox` (per instance: no module-level list, unlike Django's locmem)."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.outbox: list[OutgoingMessage] = []

    def deliver(self, message: OutgoingMessage) -> SendResult:
        self.outbox.append(message)
        return sent(message, "kept in memory")

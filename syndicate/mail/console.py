"""The console backend: each message written to a text stream (stdout by default), for the demo and debugging."""

from __future__ import annotations

import sys
from typing import TextIO

from syndicate.mail.base import MailBackend, OutgoingMessage, SendResult, sent

SEPARATOR = "-" * 79


class ConsoleBackend(MailBackend):
    """Writes the envelope and the message text, then a separator line; output is this backend's purpose."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self._stream = stream

    def deliver(self, message: OutgoingMessage) -> SendResult:
        stream = self._stream if self._stream is not None else sys.stdout
        text = message.data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        envelope = f"Envelope-From: {message.sender}\nEnvelope-To: {', '.join(message.recipients)}\n"
        try:
            stream.write(envelope + text + ("" if text.endswith("\n") else "\n") + SEPARATOR + "\n")
            stream.flush()
        except (OSError, ValueError) as e:  # a closed or broken stream: the message did not get out
            return SendResult(message.key, message.message_id, "retry", None, f"console write failed: {e}")
        return sent(message, "written to console")

"""The file backend: each message a `.eml` file delivered into a Maildir folder (tmp/, then rename into new/)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from pathlib import Path

from syndicate.errors import MailError
from syndicate.mail.base import MailBackend, OutgoingMessage, SendResult, sent

log = logging.getLogger(__name__)

MAILDIR_FOLDERS = ("tmp", "new", "cur")


class FileBackend(MailBackend):
    """Writes each message, byte for byte, as `new/<unique>.eml` under `folder` (created if missing).

    The file is written and fsynced in tmp/ and then renamed into new/, so a reader of
    new/ never sees half a message, and a message reported sent survives a crash.
    """

    name = "file"

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        self._host = socket.gethostname().replace("/", "_").replace(":", "_") or "localhost"

    def open(self) -> None:
        try:
            for name in MAILDIR_FOLDERS:
                (self.folder / name).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MailError(
                f"mail folder {self.folder}: cannot create Maildir folders: {e.strerror or e}",
                hint="check [mail] folder and its permissions",
            ) from e
        super().open()

    def deliver(self, message: OutgoingMessage) -> SendResult:
        name = f"{time.time_ns()}.P{os.getpid()}.{uuid.uuid4().hex}.{self._host}.eml"
        temporary = self.folder / "tmp" / name
        final = self.folder / "new" / name
        try:
            with open(temporary, "xb") as output:
                output.write(message.data)
                output.flush()
                os.fsync(output.fileno())
            os.rename(temporary, final)
        except OSError as e:
            temporary.unlink(missing_ok=True)
            log.warning("mail file write failed key=%s path=%s error=%s", message.key, temporary, e)
            return SendResult(message.key, message.message_id, "retry", None, f"cannot write {temporary}: {e}")
        return sent(message, f"written to {final}")

"""The bounce mailbox over IMAP: reads new messages, records what it recognises, moves only those.

Messages are read with BODY.PEEK (never marked seen); a message is moved to the processed folder only
after its event is committed, and only when it was recognised as a bounce, complaint or unsubscribe
request. Everything else stays where it was, untouched: no flag, no move, no delete. The highest UID
read is remembered per folder (under its UIDVALIDITY), so a message is read once.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import insert, select, update

from syndicate.bounces._processor import BounceProcessor
from syndicate.config import BounceImapSettings
from syndicate.errors import SyndicateError
from syndicate.storage.schema import mailbox_state

log = logging.getLogger(__name__)

_FETCH_CHUNK = 20


class MailboxError(SyndicateError):
    """The bounce mailbox cannot be read (connection, login, folder)."""


@dataclass(frozen=True)
class PollReport:
    read: int = 0
    recorded: int = 0
    moved: int = 0
    left: int = 0  # unrecognised or ignored: left where they were


class BounceMailbox:
    """Polls `[bounces.imap]`; `password` comes from the environment (password_env)."""

    def __init__(self, config: BounceImapSettings, password: str, processor: BounceProcessor) -> None:
        if not config.host or not config.username:
            raise ValueError("[bounces.imap] host and username are needed to read the bounce mailbox")
        self.config = config
        self.password = password
        self.processor = processor
        self.key = f"{config.username}@{config.host}:{config.port}/{config.folder}"[:400]

    def _connect(self) -> IMAPClient:
        c = self.config
        context = ssl.create_default_context(cafile=str(c.ca_file) if c.ca_file else None)
        try:
            client = IMAPClient(c.host, port=c.port, ssl=c.security == "tls", ssl_context=context, timeout=c.timeout)
            if c.security == "starttls":
                client.starttls(context)
            client.login(c.username, self.password)
        except (IMAPClientError, OSError) as e:
            raise MailboxError(f"[bounces.imap] {c.host}:{c.port}: cannot log in as {c.username}: {e}") from e
        return client

    def poll(self, now: datetime) -> PollReport:
        client = self._connect()
        try:
            return self._poll(client, now)
        except IMAPClientError as e:
            raise MailboxError(f"[bounces.imap] {self.key}: {e}") from e
        finally:
            try:
                client.logout()
            except (IMAPClientError, OSError):
                pass

    def _poll(self, client: IMAPClient, now: datetime) -> PollReport:
        c = self.config
        if not client.folder_exists(c.processed_folder):
            client.create_folder(c.processed_folder)
        info = client.select_folder(c.folder)
        validity = int(info[b"UIDVALIDITY"])
        last = self._last_uid(validity, now)
        uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)[: c.batch]
        read = recorded = moved = left = 0
        limit = self.processor.policy.max_message_bytes
        for start in range(0, len(uids), _FETCH_CHUNK):
            chunk = uids[start:start + _FETCH_CHUNK]
            sizes = client.fetch(chunk, ["RFC822.SIZE"])
            whole = [u for u in chunk if sizes.get(u, {}).get(b"RFC822.SIZE", 0) <= limit]
            bodies: dict[int, Any] = dict(client.fetch(whole, ["BODY.PEEK[]"])) if whole else {}
            for uid in (u for u in chunk if u not in whole):  # too big: the first `limit` bytes are kept
                bodies.update(client.fetch([uid], [f"BODY.PEEK[]<0.{limit}>"]))
            to_move = []
            for uid in chunk:
                data = bodies.get(uid, {})
                raw = next((v for k, v in data.items() if k.startswith(b"BODY[")), None)
                if raw is None:
                    continue  # expunged meanwhile
                read += 1
                size = sizes.get(uid, {}).get(b"RFC822.SIZE", len(raw))
                outcome = self.processor.receive_message(raw, source="imap", now=now, dropped=max(0, size - len(raw)))
                if outcome.recognised:
                    to_move.append(uid)
                    recorded += outcome.action != "duplicate"
                else:
                    left += 1
                self._remember(validity, uid, now)  # after the event is committed: a crash re-reads, never loses
            if to_move:
                self._move(client, to_move)
                moved += len(to_move)
        if read:
            log.info("bounce mailbox polled mailbox=%s read=%s recorded=%s moved=%s left=%s", self.key, read, recorded, moved, left)
        return PollReport(read, recorded, moved, left)

    def _move(self, client: IMAPClient, uids: list[int]) -> None:
        if client.has_capability("MOVE"):
            client.move(uids, self.config.processed_folder)
        elif client.has_capability("UIDPLUS"):
            client.copy(uids, self.config.processed_folder)
            client.delete_messages(uids)
            client.uid_expunge(uids)  # only these: other \\Deleted messages are not ours to expunge
        else:
            client.copy(uids, self.config.processed_folder)  # left in place too rather than expunge others' mail
            log.warning("bounce mailbox has neither MOVE nor UIDPLUS: recognised messages copied, not removed")

    def _last_uid(self, validity: int, now: datetime) -> int:
        c = mailbox_state.c
        with self.processor.database.write() as connection:
            row = connection.execute(select(c.uidvalidity, c.last_uid).where(c.mailbox == self.key)).first()
            if row is None:
                connection.execute(insert(mailbox_state).values(mailbox=self.key, uidvalidity=validity, last_uid=0, polled_at=now))
                return 0
            if row.uidvalidity != validity:  # the folder was recreated: its UIDs start again
                connection.execute(update(mailbox_state).where(c.mailbox == self.key).values(uidvalidity=validity, last_uid=0))
                return 0
            return int(row.last_uid)

    def _remember(self, validity: int, uid: int, now: datetime) -> None:
        c = mailbox_state.c
        with self.processor.database.write() as connection:
            connection.execute(update(mailbox_state).where(c.mailbox == self.key, c.last_uid < uid)
                               .values(last_uid=uid, uidvalidity=validity, polled_at=now))

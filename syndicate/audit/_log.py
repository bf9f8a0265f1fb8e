"""The audit_log table: one row per operator action, written by the CLI, the API and the console."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from syndicate.content import xml_safe
from syndicate.storage import Database
from syndicate.storage.schema import audit_log

log = logging.getLogger(__name__)

MAX_DETAIL = 2000


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    subject_kind: str
    subject_id: int | None
    detail: str


class AuditLog:
    def __init__(self, database: Database) -> None:
        self.database = database

    def record(self, now: datetime, actor: str, action: str, subject_kind: str, subject_id: int | None, detail: str = "") -> None:
        self.record_many(now, actor, action, subject_kind, [subject_id], detail)

    def record_many(self, now: datetime, actor: str, action: str, subject_kind: str, subject_ids: Sequence[int | None],
                    detail: str = "") -> None:
        if not subject_ids:
            return
        with self.database.write() as connection:
            connection.execute(insert(audit_log), [
                {"at": now, "actor": xml_safe(actor)[:120], "action": action, "subject_kind": subject_kind, "subject_id": sid,
                 "detail": xml_safe(detail)[:MAX_DETAIL]}  # free text an operator typed: nothing a database cannot hold
                for sid in subject_ids
            ])
        # The log line names ids, never the detail (free text an operator typed).
        log.info("audit actor=%s action=%s %s=%s", actor, action, subject_kind, ",".join(str(i) for i in subject_ids[:20]))

    def of(self, subject_kind: str, subject_id: int, limit: int = 100) -> list[AuditEntry]:
        c = audit_log.c
        query = (select(c.id, c.at, c.actor, c.action, c.subject_kind, c.subject_id, c.detail)
                 .where(c.subject_kind == subject_kind, c.subject_id == subject_id).order_by(c.id.desc()).limit(limit))
        with self.database.read() as connection:
            return [AuditEntry(*row) for row in connection.execute(query)]

    def recent(self, limit: int = 50) -> list[AuditEntry]:
        c = audit_log.c
        query = select(c.id, c.at, c.actor, c.action, c.subject_kind, c.subject_id, c.detail).order_by(c.id.desc()).limit(limit)
        with self.database.read() as connection:
            return [AuditEntry(*row) for row in connection.execute(query)]

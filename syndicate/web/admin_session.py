"""Console sign-ins: a random token in an HttpOnly, SameSite=Strict cookie, its hash in the database
with an expiry; the CSRF token of every console form is derived from it (a synchronizer token)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select

from syndicate.storage import Database
from syndicate.storage.schema import admin_sessions

log = logging.getLogger(__name__)

SESSION_COOKIE = "syndicate_admin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_for(token: str) -> str:
    """The CSRF token of the session holding `token`: known to its pages, not guessable without the cookie."""
    return hmac.new(token.encode(), b"syndicate console csrf", hashlib.sha256).hexdigest()


def csrf_matches(token: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_for(token), given or "")


class AdminSessions:
    """Console sessions in the database, so signing out (or expiry) ends them for every process."""

    def __init__(self, database: Database, lifetime: timedelta) -> None:
        self.database = database
        self.lifetime = lifetime

    def create(self, actor: str, now: datetime) -> str:
        token = secrets.token_urlsafe(32)
        with self.database.write() as connection:
            connection.execute(delete(admin_sessions).where(admin_sessions.c.expires_at <= now))
            connection.execute(insert(admin_sessions).values(
                token_hash=_hash(token), actor=actor, created_at=now, expires_at=now + self.lifetime))
        log.info("console sign-in actor=%s", actor)
        return token

    def actor(self, token: str | None, now: datetime) -> str | None:
        """Who holds this session, or None (no such session, or expired)."""
        if not token or len(token) > 100:
            return None
        c = admin_sessions.c
        with self.database.read() as connection:
            row = connection.execute(select(c.actor, c.expires_at).where(c.token_hash == _hash(token))).first()
        if row is None or row.expires_at <= now:
            return None
        return str(row.actor)

    def end(self, token: str | None) -> None:
        if token:
            with self.database.write() as connection:
                connection.execute(delete(admin_sessions).where(admin_sessions.c.token_hash == _hash(token)))

"""The sign-up limits, counted in the database so that every process of one site shares them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from syndicate.config import SignupSettings
from syndicate.storage import Database, schema

log = logging.getLogger(__name__)
signup_attempts, spent_forms = schema.signup_attempts, schema.spent_forms

WINDOW = timedelta(hours=1)
REFUSAL_WINDOW = timedelta(hours=24)  # how long refusals are kept and counted by `syndicate status`


@dataclass(frozen=True)
class SignupLimits:
    """Admits or refuses each sign-up of the public form; every decision is recorded."""

    database: Database
    settings: SignupSettings

    def admit(self, *, client: str, mailbox: str, domain: str, now: datetime, refused: str | None = None) -> str | None:
        """Record a sign-up and return why it is refused (None: accepted, send the confirmation).
        `refused` is a reason already found by the caller (honeypot, too-fast); it is recorded as such."""
        a = signup_attempts.c
        with self.database.write() as connection:
            if self.database.dialect == "postgresql":  # one admission at a time: counts and insert stay consistent
                connection.execute(text("LOCK TABLE signup_attempts IN SHARE ROW EXCLUSIVE MODE"))
            connection.execute(delete(signup_attempts).where(a.at < now - REFUSAL_WINDOW))
            if refused is None:
                refused = self._over_limit(connection, client, mailbox, domain, now)
            connection.execute(insert(signup_attempts).values(
                at=now, client=client[:64], mailbox=mailbox[:320], domain=domain[:255], refused=refused,
            ))
        if refused is not None:
            log.warning("signup refused reason=%s client=%s domain=%s", refused, client, domain)
        return refused

    def _over_limit(self, connection: Connection, client: str, mailbox: str, domain: str, now: datetime) -> str | None:
        a = signup_attempts.c
        recent = (a.at > now - WINDOW) & a.refused.is_(None)
        limits = (
            ("overall", None, self.settings.overall_per_hour),
            ("client", a.client == client, self.settings.per_client_per_hour),
            ("mailbox", a.mailbox == mailbox, self.settings.per_mailbox_per_hour),
            ("domain", a.domain == domain, self.settings.per_domain_per_hour),
        )
        for name, condition, limit in limits:
            where = recent if condition is None else recent & condition
            count = connection.execute(select(func.count()).select_from(signup_attempts).where(where)).scalar_one()
            if count >= limit:
                return f"{name}-limit"
        return None

    def refusals(self, now: datetime) -> Mapping[str, int]:
        """Refused sign-ups of the last 24 hours, by reason."""
        a = signup_attempts.c
        with self.database.read() as connection:
            rows = connection.execute(
                select(a.refused, func.count()).where(a.refused.is_not(None), a.at > now - REFUSAL_WINDOW)
                .group_by(a.refused)
            ).all()
        return {reason: count for reason, count in sorted(rows)}

    def spend_form(self, form_id: str, *, expires_at: datetime, now: datetime) -> bool:
        """Mark a served form as used; False when it was used before."""
        f = spent_forms.c
        try:
            with self.database.write() as connection:
                connection.execute(delete(spent_forms).where(f.expires_at < now))
                connection.execute(insert(spent_forms).values(form_id=form_id[:64], expires_at=expires_at))
        except IntegrityError:
            return False
        return True

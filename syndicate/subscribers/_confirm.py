"""Double opt-in: the confirmation email with its signed link, rate-limited per address in the database."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import parseaddr

from sqlalchemy import delete, func, insert, select

from syndicate.config import Settings
from syndicate.content._model import Category
from syndicate.digest._message import build_confirmation
from syndicate.digest._render import EmailRenderer
from syndicate.mail import MailBackend, OutgoingMessage, make_backend
from syndicate.site._urls import SiteUrls
from syndicate.storage.schema import confirmation_sends, subscribers
from syndicate.subscribers._model import Subscriber
from syndicate.subscribers._store import SubscriberStore
from syndicate.subscribers._suppression import SuppressionList
from syndicate.subscribers._tokens import signer_from_settings

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)


def _take_slot(store: SubscriberStore, email_key: str, limit: int, now: datetime) -> bool:
    """Record one confirmation for `email_key` unless `limit` were already sent within the window."""
    c = confirmation_sends.c
    with store.database.write() as connection:
        # Serialise concurrent sign-ups of one address (PostgreSQL; SQLite's writes are serial already).
        connection.execute(select(subscribers.c.id).where(subscribers.c.email_key == email_key).with_for_update())
        connection.execute(delete(confirmation_sends).where(c.email_key == email_key, c.sent_at <= now - WINDOW))
        recent = connection.execute(
            select(func.count()).select_from(confirmation_sends).where(c.email_key == email_key)
        ).scalar_one()
        if recent >= limit:
            return False
        connection.execute(insert(confirmation_sends).values(email_key=email_key, sent_at=now))
    return True


def confirmation_message(settings: Settings, subscriber: Subscriber, categories: Sequence[Category],
                         confirm_url: str, now: datetime) -> OutgoingMessage:
    """The confirmation email (syndicate.digest._message builds the bytes) ready for a mail backend."""
    data = build_confirmation(
        settings, EmailRenderer(settings), email=subscriber.email, name=subscriber.name,
        categories=categories, confirm_url=confirm_url, now=now,
    )
    found = re.search(rb"^Message-ID: (<[^>\r\n]+>)", data, re.MULTILINE | re.IGNORECASE)
    return OutgoingMessage(
        key=f"confirm-{subscriber.id}", sender=parseaddr(settings.mail.from_)[1], recipients=(subscriber.email,),
        data=data, message_id=found.group(1).decode() if found else "",
    )


def _confirmation_sender(settings: Settings, subscriber_id: int, environ: Mapping[str, str] | None) -> str | None:
    """bounce+TOKEN@ naming the subscriber when `[bounces] return_path` is set (VERP, #13)."""
    if settings.bounces.return_path is None:
        return None
    from syndicate.bounces import settings_tokens  # the bounces package builds on this one

    tokens = settings_tokens(settings, environ)
    return tokens.envelope_sender("s", subscriber_id) if tokens is not None else None


def category_names(settings: Settings, slugs: Sequence[str]) -> tuple[Category, ...]:
    """Categories for `slugs`, named from the config where it names them (else from the slug)."""
    named = {slug: rule.title for slug, rule in settings.categories.items() if rule.title}
    return tuple(Category(slug, named.get(slug) or slug.replace("-", " ").capitalize()) for slug in slugs)


def send_confirmation(
    settings: Settings,
    store: SubscriberStore,
    subscriber: Subscriber,
    *,
    now: datetime,
    backend: MailBackend | None = None,
    environ: Mapping[str, str] | None = None,
    categories: Sequence[Category] | None = None,
) -> bool:
    """Mail `subscriber` their signed confirm link. False (nothing sent) when the address already got
    `[http] confirmations_per_hour` of them within the last hour. A backend failure is logged, not raised.
    `categories` (the subscriber's, with their display names) default to names from the config."""
    if SuppressionList(store.database).is_suppressed(subscriber.email):
        # Answered like a sent confirmation: the sign-up form must not tell anyone the address is suppressed.
        log.info("confirmation not sent: address suppressed subscriber=%s", subscriber.id)
        return True
    if not _take_slot(store, subscriber.email.lower(), settings.http.confirmations_per_hour, now):
        log.warning("confirmation rate-limited subscriber=%s", subscriber.id)
        return False
    token = signer_from_settings(settings, environ).make("confirm", subscriber.id, now=now)
    url = SiteUrls(settings.site.base_url, settings.feeds.folder).confirm(token)
    chosen = categories if categories is not None else category_names(settings, subscriber.categories)
    message = confirmation_message(settings, subscriber, chosen, url, now)
    verp = _confirmation_sender(settings, subscriber.id, environ)
    if verp is not None:
        message = replace(message, sender=verp)
    mailer = backend if backend is not None else make_backend(settings)
    for result in mailer.send_messages([message]):
        if result.outcome == "sent":
            log.info("confirmation sent subscriber=%s message_id=%s", subscriber.id, result.message_id)
        else:
            log.error("confirmation not sent subscriber=%s outcome=%s reply=%s", subscriber.id, result.outcome, result.reply)
    return True

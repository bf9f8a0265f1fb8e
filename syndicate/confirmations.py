"""Double opt-in: the confirmation email with its signed link, rate-limited per address in the database."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from sqlalchemy import delete, func, insert, select

from syndicate.config import Settings
from syndicate.mail import MailBackend, OutgoingMessage, make_backend
from syndicate.models import Subscriber
from syndicate.schema import confirmation_sends
from syndicate.subscribers import SubscriberStore
from syndicate.tokens import signer_from_settings
from syndicate.urls import SiteUrls

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)


def _take_slot(store: SubscriberStore, email_key: str, limit: int, now: datetime) -> bool:
    """Record one confirmation for `email_key` unless `limit` were already sent within the window."""
    c = confirmation_sends.c
    with store.database.write() as connection:
        connection.execute(delete(confirmation_sends).where(c.email_key == email_key, c.sent_at <= now - WINDOW))
        recent = connection.execute(
            select(func.count()).select_from(confirmation_sends).where(c.email_key == email_key)
        ).scalar_one()
        if recent >= limit:
            return False
        connection.execute(insert(confirmation_sends).values(email_key=email_key, sent_at=now))
    return True


def confirmation_message(settings: Settings, subscriber: Subscriber, confirm_url: str, now: datetime) -> OutgoingMessage:
    """The confirmation email: plain text, one link, no tracking."""
    site = settings.site.title
    hours = settings.links.confirm_max_age // 3600
    message = EmailMessage()
    message["From"] = settings.mail.from_
    message["To"] = str(Address(display_name=subscriber.name or "", addr_spec=subscriber.email))
    message["Subject"] = f"Confirm your subscription to {site}"
    message["Date"] = format_datetime(now)
    message_id = make_msgid(domain=settings.mail.domain)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        f"Hello{' ' + subscriber.name if subscriber.name else ''},\n\n"
        f"Someone (we hope you) asked to receive {site} digests at this address.\n"
        f"To confirm, open this link and press the button:\n\n{confirm_url}\n\n"
        f"The link works for {hours} hours. If you did not ask for this, ignore this email:\n"
        f"nothing will be sent to you.\n"
    )
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    sender = parseaddr(settings.mail.from_)[1]
    return OutgoingMessage(
        key=f"confirm-{subscriber.id}", sender=sender, recipients=(subscriber.email,), data=data, message_id=message_id,
    )


def send_confirmation(
    settings: Settings,
    store: SubscriberStore,
    subscriber: Subscriber,
    *,
    now: datetime,
    backend: MailBackend | None = None,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Mail `subscriber` their signed confirm link. False (nothing sent) when the address already got
    `[http] confirmations_per_hour` of them within the last hour. A backend failure is logged, not raised."""
    if not _take_slot(store, subscriber.email.lower(), settings.http.confirmations_per_hour, now):
        log.warning("confirmation rate-limited subscriber=%s", subscriber.id)
        return False
    token = signer_from_settings(settings, environ).make("confirm", subscriber.id, now=now)
    url = SiteUrls(settings.site.base_url, settings.feeds.folder).confirm(token)
    message = confirmation_message(settings, subscriber, url, now)
    mailer = backend if backend is not None else make_backend(settings)
    for result in mailer.send_messages([message]):
        if result.outcome == "sent":
            log.info("confirmation sent subscriber=%s message_id=%s", subscriber.id, result.message_id)
        else:
            log.error("confirmation not sent subscriber=%s outcome=%s reply=%s", subscriber.id, result.outcome, result.reply)
    return True

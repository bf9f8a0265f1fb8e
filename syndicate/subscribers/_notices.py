"""The one-off emails around a subscription (welcome after confirming, "already subscribed" on a
repeated sign-up) and the sentence saying when a subscriber's digests come, in their own time."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.utils import parseaddr
from zoneinfo import ZoneInfo

from syndicate.config import Settings
from syndicate.content._model import Category
from syndicate.digest._message import build_notice
from syndicate.digest._render import EmailRenderer, join_names
from syndicate.mail import MailBackend, OutgoingMessage, make_backend
from syndicate.site._urls import SiteUrls
from syndicate.subscribers._confirm import _take_slot, category_names
from syndicate.subscribers._model import WEEKDAYS, Frequency, Subscriber
from syndicate.subscribers._store import SubscriberStore, next_send_time
from syndicate.subscribers._tokens import signer_from_settings

log = logging.getLogger(__name__)


def describe_schedule(subscriber: Subscriber, after: datetime, *, which: str = "first") -> str:
    """When the digests come, in the subscriber's own zone: "Your digest comes every Monday at 07:00
    (Europe/Paris time), the first on Monday 8 December." """
    first = next_send_time(subscriber.timezone, subscriber.send_hour, subscriber.frequency, subscriber.weekday, after)
    local = first.astimezone(ZoneInfo(subscriber.timezone))
    when = (f"every {WEEKDAYS[subscriber.weekday].capitalize()}" if subscriber.frequency is Frequency.WEEKLY
            else "every day")
    year = f" {local.year}" if local.year != after.astimezone(local.tzinfo).year else ""
    return (f"Your digest comes {when} at {subscriber.send_hour:02d}:00 ({subscriber.timezone} time), "
            f"the {which} on {local:%A} {local.day} {local:%B}{year}.")


def _send(settings: Settings, subscriber: Subscriber, template: str, subject: str, values: Mapping[str, str],
          now: datetime, backend: MailBackend | None) -> bool:
    data = build_notice(settings, EmailRenderer(settings), email=subscriber.email, name=subscriber.name,
                        template=template, subject=subject, values=values, now=now)
    found = re.search(rb"^Message-ID: (<[^>\r\n]+>)", data, re.MULTILINE | re.IGNORECASE)
    message = OutgoingMessage(
        key=f"{template}-{subscriber.id}", sender=parseaddr(settings.mail.from_)[1], recipients=(subscriber.email,),
        data=data, message_id=found.group(1).decode() if found else "",
    )
    mailer = backend if backend is not None else make_backend(settings)
    sent = False
    for result in mailer.send_messages([message]):
        if result.outcome == "sent":
            sent = True
            log.info("%s email sent subscriber=%s message_id=%s", template, subscriber.id, result.message_id)
        else:
            log.error("%s email not sent subscriber=%s outcome=%s reply=%s", template, subscriber.id, result.outcome, result.reply)
    return sent


def _values(settings: Settings, subscriber: Subscriber, categories: Sequence[Category] | None, now: datetime,
            environ: Mapping[str, str] | None, which: str = "first") -> dict[str, str]:
    signer = signer_from_settings(settings, environ)
    urls = SiteUrls(settings.site.base_url, settings.feeds.folder)
    chosen = categories if categories is not None else category_names(settings, subscriber.categories)
    name = " ".join((subscriber.name or "").split())
    return {
        "greeting": f"Hello {name}," if name else "Hello,",
        "email": subscriber.email,
        "following": join_names([c.name for c in chosen]) or "every category",
        "schedule": describe_schedule(subscriber, now, which=which),
        "preferences_url": urls.preferences(signer.make("preferences", subscriber.id, now=now)),
        "unsubscribe_url": urls.unsubscribe(signer.make("unsubscribe", subscriber.id, now=now)),
        "postal_address": settings.site.postal_address or "",
    }


def send_welcome(settings: Settings, subscriber: Subscriber, *, now: datetime, backend: MailBackend | None = None,
                 environ: Mapping[str, str] | None = None, categories: Sequence[Category] | None = None) -> bool:
    """The welcome email after confirming, when `[email] welcome` is on and the templates exist."""
    if not settings.email.welcome or not EmailRenderer(settings).has_template("welcome"):
        return False
    subject = f"Welcome to {settings.site.title}"
    return _send(settings, subscriber, "welcome", subject, _values(settings, subscriber, categories, now, environ), now, backend)


def send_already_subscribed(settings: Settings, store: SubscriberStore, subscriber: Subscriber, *, now: datetime,
                            backend: MailBackend | None = None, environ: Mapping[str, str] | None = None,
                            categories: Sequence[Category] | None = None) -> bool:
    """A short "you are already subscribed" email with the preferences link, counted against the same
    per-address hourly limit as confirmations (so the form cannot be used to flood an inbox)."""
    if not _take_slot(store, subscriber.email.lower(), settings.http.confirmations_per_hour, now):
        log.warning("already-subscribed email rate-limited subscriber=%s", subscriber.id)
        return False
    subject = f"You are already subscribed to {settings.site.title}"
    values = _values(settings, subscriber, categories, now, environ, which="next")
    return _send(settings, subscriber, "already_subscribed", subject, values, now, backend)

"""Double opt-in: the confirmation email with its signed link, rate-limited per address in the database."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.utils import parseaddr

from syndicate.config import Settings
from syndicate.content._model import Category
from syndicate.digest._message import build_confirmation
from syndicate.digest._render import EmailRenderer
from syndicate.mail import MailBackend, OutgoingMessage, make_backend
from syndicate.site._urls import SiteUrls
from syndicate.subscribers._model import Subscriber
from syndicate.subscribers._store import SubscriberStore
from syndicate.subscribers._tokens import signer_from_settings

log = logging.getLogger(__name__)

def confirmation_message(settings: Settings, subscriber: Subscriber, categories: Sequence[Category],
                         confirm_url: str, now: datetime) -> OutgoingMessage:
    """The confirmation email (syndicate.digest._message builds the bytes) ready for a mail backend."""
    data = build_confirmation(
        settings, EmailRenderer(settings), email=subscriber.email, name=subscriber.name,
        categories=categories, confirm_url=confirm_url, now=now,
    )
    found = re.search(rb"^Message-ID: (<[^>\r\n]+>)", data, re.MULTILINE | re.IGNORECASE)
    return OutgoingMessage(
        key=f"confirm-{subscriber.id}", sender=parseaddr(settings.mail.from_)[1], recipients=(subscriber.address.envelope,),
        data=data, message_id=found.group(1).decode() if found else "",
    )


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
    if not store.take_confirmation_slot(subscriber.email.lower(), settings.http.confirmations_per_hour, now):
        log.warning("confirmation rate-limited subscriber=%s", subscriber.id)
        return False
    token = signer_from_settings(settings, environ).make("confirm", subscriber.id, now=now)
    url = SiteUrls(settings.site.base_url, settings.feeds.folder).confirm(token)
    chosen = categories if categories is not None else category_names(settings, subscriber.categories)
    message = confirmation_message(settings, subscriber, chosen, url, now)
    mailer = backend if backend is not None else make_backend(settings)
    for result in mailer.send_messages([message]):
        if result.outcome == "sent":
            log.info("confirmation sent subscriber=%s message_id=%s", subscriber.id, result.message_id)
        else:
            log.error("confirmation not sent subscriber=%s outcome=%s reply=%s", subscriber.id, result.outcome, result.reply)
    return True

"""The one-off emails around a subscription (welcome after confirming, "already subscribed" on a
repeated sign-up) and the sentence saying when a subscriber's digests come, in their own time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from syndicate.content import Category
from syndicate.mail import MailBackend, OutgoingMessage
from syndicate.site import SiteUrls
from syndicate.subscribers._confirm import category_names
from syndicate.subscribers._model import WEEKDAYS, Frequency, Subscriber
from syndicate.subscribers._store import SubscriberStore, next_send_time
from syndicate.subscribers._tokens import LinkSigner

log = logging.getLogger(__name__)

# (subscriber, template name, subject, plain-text values, now) -> the message to send; the composition
# root builds it from the digest stage's renderer (templates email/{template}.html.j2 and .txt.j2).
ComposeNotice = Callable[[Subscriber, str, str, Mapping[str, str], datetime], OutgoingMessage]


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


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class Notices:
    """Sends the welcome and "already subscribed" emails. The second counts against the same
    per-address hourly limit as confirmations, so the signup form cannot flood an inbox."""

    def __init__(self, store: SubscriberStore, *, signer: LinkSigner, urls: SiteUrls, compose: ComposeNotice,
                 backend: Callable[[], MailBackend], per_hour: int, category_titles: Mapping[str, str],
                 site_title: str, welcome: bool, postal_address: str | None = None) -> None:
        self.store = store
        self.signer = signer
        self.urls = urls
        self.compose = compose
        self.backend = backend
        self.per_hour = per_hour
        self.category_titles = dict(category_titles)
        self.site_title = site_title
        self.welcome_on = welcome
        self.postal_address = postal_address or ""

    def _values(self, subscriber: Subscriber, categories: Sequence[Category] | None, now: datetime,
                which: str) -> dict[str, str]:
        chosen = categories if categories is not None else category_names(self.category_titles, subscriber.categories)
        name = " ".join((subscriber.name or "").split())
        return {
            "greeting": f"Hello {name}," if name else "Hello,",
            "email": subscriber.email,
            "following": _join([c.name for c in chosen]) if chosen else "every category",
            "schedule": describe_schedule(subscriber, now, which=which),
            "preferences_url": self.urls.preferences(self.signer.make("preferences", subscriber.id, now=now)),
            "unsubscribe_url": self.urls.unsubscribe(self.signer.make("unsubscribe", subscriber.id, now=now)),
            "postal_address": self.postal_address,
        }

    def _send(self, subscriber: Subscriber, template: str, subject: str, values: Mapping[str, str], now: datetime,
              backend: MailBackend | None) -> bool:
        message = self.compose(subscriber, template, subject, values, now)
        mailer = backend if backend is not None else self.backend()
        sent = False
        for result in mailer.send_messages([message]):
            if result.outcome == "sent":
                sent = True
                log.info("%s email sent subscriber=%s message_id=%s", template, subscriber.id, result.message_id)
            else:
                log.error("%s email not sent subscriber=%s outcome=%s reply=%s",
                          template, subscriber.id, result.outcome, result.reply)
        return sent

    def welcome(self, subscriber: Subscriber, *, now: datetime, backend: MailBackend | None = None,
                categories: Sequence[Category] | None = None) -> bool:
        """The welcome email after confirming, when `[email] welcome` is on."""
        if not self.welcome_on:
            return False
        values = self._values(subscriber, categories, now, "first")
        return self._send(subscriber, "welcome", f"Welcome to {self.site_title}", values, now, backend)

    def already_subscribed(self, subscriber: Subscriber, *, now: datetime, backend: MailBackend | None = None,
                           categories: Sequence[Category] | None = None) -> bool:
        """A short "you are already subscribed" email with the preferences link (rate-limited)."""
        if not self.store.take_confirmation_slot(subscriber.address.key, self.per_hour, now):
            log.warning("already-subscribed email rate-limited subscriber=%s", subscriber.id)
            return False
        values = self._values(subscriber, categories, now, "next")
        return self._send(subscriber, "already_subscribed", f"You are already subscribed to {self.site_title}",
                          values, now, backend)

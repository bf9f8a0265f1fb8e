"""Double opt-in: the confirmation email with its signed link, rate-limited per address in the database."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from syndicate.content import Category
from syndicate.mail import MailBackend, OutgoingMessage
from syndicate.site import SiteUrls
from syndicate.subscribers._model import Subscriber
from syndicate.subscribers._store import SubscriberStore
from syndicate.subscribers._tokens import LinkSigner

log = logging.getLogger(__name__)

# (subscriber, their categories with display names, the confirm URL, now) -> the message to send;
# the composition root builds it from the digest stage's renderer.
ComposeConfirmation = Callable[[Subscriber, Sequence[Category], str, datetime], OutgoingMessage]


def category_names(named: Mapping[str, str], slugs: Sequence[str]) -> tuple[Category, ...]:
    """Categories for `slugs`, named from `named` (slug -> configured title) where it names them."""
    return tuple(Category(slug, named.get(slug) or slug.replace("-", " ").capitalize()) for slug in slugs)


class Confirmations:
    """Mails a subscriber their signed confirm link, at most `per_hour` times an hour per address."""

    def __init__(self, store: SubscriberStore, *, signer: LinkSigner, urls: SiteUrls, compose: ComposeConfirmation,
                 backend: Callable[[], MailBackend], per_hour: int, category_titles: Mapping[str, str]) -> None:
        self.store = store
        self.signer = signer
        self.urls = urls
        self.compose = compose
        self.backend = backend
        self.per_hour = per_hour
        self.category_titles = dict(category_titles)

    def send(self, subscriber: Subscriber, *, now: datetime, backend: MailBackend | None = None,
             categories: Sequence[Category] | None = None) -> bool:
        """False (nothing sent) when the address already got `per_hour` confirmations within the last hour.
        A backend failure is logged, not raised. `categories` (the subscriber's, with their display
        names) default to the configured titles."""
        if not self.store.take_confirmation_slot(subscriber.address.key, self.per_hour, now):
            log.warning("confirmation rate-limited subscriber=%s", subscriber.id)
            return False
        url = self.urls.confirm(self.signer.make("confirm", subscriber.id, now=now))
        chosen = categories if categories is not None else category_names(self.category_titles, subscriber.categories)
        message = self.compose(subscriber, chosen, url, now)
        mailer = backend if backend is not None else self.backend()
        for result in mailer.send_messages([message]):
            if result.outcome == "sent":
                log.info("confirmation sent subscriber=%s message_id=%s", subscriber.id, result.message_id)
            else:
                log.error("confirmation not sent subscriber=%s outcome=%s reply=%s",
                          subscriber.id, result.outcome, result.reply)
        return True

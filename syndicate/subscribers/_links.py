"""The links in a subscriber's emails: signed unsubscribe and preferences URLs (and confirm URLs)."""

from __future__ import annotations

from datetime import datetime

from syndicate.site import SiteUrls
from syndicate.subscribers._model import Subscriber
from syndicate.subscribers._tokens import LinkSigner

PLACEHOLDER_TOKEN = "preview"


class SignedLinks:
    """The LinkMaker of real emails: URLs carrying tokens signed by `signer`.

    `now` is the time the tokens say they were made: a run passes its start time, so a message
    re-rendered for a resend carries the very same links.
    """

    def __init__(self, signer: LinkSigner, urls: SiteUrls, *, now: datetime | None = None) -> None:
        self.signer = signer
        self.urls = urls
        self.now = now

    def unsubscribe_url(self, subscriber: Subscriber) -> str:
        return self.urls.unsubscribe(self.signer.make("unsubscribe", subscriber.id, now=self.now))

    def preferences_url(self, subscriber: Subscriber) -> str:
        return self.urls.preferences(self.signer.make("preferences", subscriber.id, now=self.now))

    def confirm_url(self, subscriber_id: int) -> str:
        return self.urls.confirm(self.signer.make("confirm", subscriber_id, now=self.now))


class PlaceholderLinks:
    """Links for previews and test copies: the real pages with the token "preview", never a signed
    token, so a copy can be shared without letting anyone unsubscribe the subscriber."""

    def __init__(self, urls: SiteUrls) -> None:
        self.urls = urls

    def unsubscribe_url(self, subscriber: Subscriber) -> str:
        return self.urls.unsubscribe(PLACEHOLDER_TOKEN)

    def preferences_url(self, subscriber: Subscriber) -> str:
        return self.urls.preferences(PLACEHOLDER_TOKEN)

"""The one bounce processor every inbound path feeds: ties an event to its delivery and subscriber, records it, applies the policy."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from syndicate.bounces._classify import COMPLAINT, HARD, IGNORED, SOFT, UNRECOGNISED, UNSUBSCRIBE, Classification, Classifier
from syndicate.bounces._events import BounceEvents
from syndicate.bounces._verp import AddressTokens, TokenRef
from syndicate.config import BounceSettings, LinkSettings, read_secret
from syndicate.storage import Database
from syndicate.storage.schema import deliveries, subscribers
from syndicate.subscribers import (
    InvalidAddressError,
    StatusChange,
    SubscriberStatus,
    SubscriberStore,
    SuppressionList,
    parse_address,
)

log = logging.getLogger(__name__)

MAIL_SOURCES = ("imap", "pipe")
WEBHOOK_SOURCES = ("generic", "sendgrid", "mailgun", "postmark", "ses")


@dataclass(frozen=True)
class BouncePolicy:
    hard_limit: int = 1
    soft_limit: int = 3
    soft_window: timedelta = timedelta(days=14)
    max_message_bytes: int = 10 * 1024 * 1024

    @classmethod
    def from_settings(cls, bounces: BounceSettings) -> BouncePolicy:
        return cls(bounces.hard_limit, bounces.soft_limit, timedelta(days=bounces.soft_window), bounces.max_message_bytes)


@dataclass(frozen=True)
class ProviderEvent:
    """An event a provider's webhook reported, already authenticated and mapped to our kinds."""

    kind: str
    recipient: str | None
    status: str | None
    diagnostic: str
    event_id: str  # the provider's id for it: a retry of the same event is recorded once
    payload: bytes  # the raw JSON, kept as the event's raw message


@dataclass(frozen=True)
class Outcome:
    """What receiving one message or event did. `action`: recorded, bounced, unsubscribed, duplicate or unrecognised."""

    action: str
    kind: str
    event_id: int | None = None
    subscriber_id: int | None = None
    delivery_id: int | None = None
    change_id: int | None = None
    suppressed: bool = False

    @property
    def recognised(self) -> bool:
        return self.kind not in (UNRECOGNISED, IGNORED)


class BounceProcessor:
    """Every inbound path (mailbox, pipe, webhooks) hands its messages or events here."""

    def __init__(self, database: Database, store: SubscriberStore, *, tokens: AddressTokens | None,
                 policy: BouncePolicy = BouncePolicy()) -> None:
        self.database = database
        self.store = store
        self.tokens = tokens
        self.policy = policy
        self.classifier = Classifier(tokens)
        self.events = BounceEvents(database)
        self.suppressions = SuppressionList(database)
        # With VERP on, a bounce mailed to us must carry a genuine token to change anyone (a forged
        # bounce naming an address could otherwise unsubscribe it); webhooks are authenticated instead.
        self.verp = tokens is not None and tokens.return_path is not None

    # -- the inbound paths' entry points

    def receive_message(self, raw: bytes, *, source: str, now: datetime, envelope_recipient: str | None = None,
                        keep_unrecognised: bool = False, dropped: int = 0) -> Outcome:
        """Classify and record a mailed message. An unrecognised one is recorded (as ignored) only with
        `keep_unrecognised` (the pipe: nothing it was given may be lost); the mailbox leaves it where it is.
        `dropped`: bytes the caller already left out beyond [bounces] max_message_bytes."""
        if source not in MAIL_SOURCES:
            raise ValueError(f"unknown mail source {source!r}")
        kept = raw[: self.policy.max_message_bytes]
        result = self.classifier.classify(kept, envelope_recipient=envelope_recipient)
        if result.kind == UNRECOGNISED and not keep_unrecognised:
            log.info("inbound message not recognised source=%s", source)
            return Outcome("unrecognised", UNRECOGNISED)
        kind = IGNORED if result.kind == UNRECOGNISED else result.kind
        fingerprint = hashlib.sha256(raw).hexdigest()
        return self._record(result, kind, source, fingerprint, kept, len(raw) - len(kept) + dropped, now, trusted=not self.verp)

    def receive_event(self, event: ProviderEvent, *, source: str, now: datetime) -> Outcome:
        if source not in WEBHOOK_SOURCES:
            raise ValueError(f"unknown webhook source {source!r}")
        found = tuple(self.tokens.in_text(event.payload.decode("utf-8", "replace"))) if self.tokens else ()
        result = Classification(event.kind, event.recipient.lower() if event.recipient else None, event.status,
                                event.diagnostic, "webhook", found)
        fingerprint = hashlib.sha256(event.event_id.encode()).hexdigest()
        payload = event.payload[: self.policy.max_message_bytes]
        return self._record(result, event.kind, source, fingerprint, payload, len(event.payload) - len(payload), now, trusted=True)

    # -- recording and the policy

    def _record(self, result: Classification, kind: str, source: str, fingerprint: str, raw: bytes, truncated: int,
                now: datetime, *, trusted: bool) -> Outcome:
        with self.database.write() as connection:
            delivery_id, subscriber_id = self._tie(connection, result, trusted)
            event_id = self.events.insert(connection, {
                "received_at": now, "kind": kind, "source": source, "fingerprint": fingerprint,
                "delivery_id": delivery_id, "subscriber_id": subscriber_id, "recipient": result.recipient,
                "status_code": result.status, "diagnostic": result.diagnostic[:2000], "method": result.method,
                "raw": raw, "truncated": truncated,
            })
            if event_id is None:
                log.info("bounce event already recorded source=%s kind=%s", source, kind)
                return Outcome("duplicate", kind, None, subscriber_id, delivery_id)
            outcome = self._apply(connection, kind, result, event_id, subscriber_id, delivery_id, now)
        log.info("bounce event id=%s kind=%s source=%s method=%s delivery=%s subscriber=%s status=%s action=%s",
                 event_id, kind, source, result.method, delivery_id, subscriber_id, result.status, outcome.action)
        return outcome

    def _tie(self, connection: Connection, result: Classification, trusted: bool) -> tuple[int | None, int | None]:
        """(delivery id, subscriber id): from a genuine token first; by the recipient's address only when `trusted`."""
        unsubscribe = [t for t in result.tokens if t.kind == "u"]
        ordered: list[TokenRef] = (unsubscribe if result.kind == UNSUBSCRIBE else []) + [t for t in result.tokens if t.kind != "u"] + unsubscribe
        for ref in ordered:
            if ref.kind == "d":
                row = connection.execute(select(deliveries.c.subscriber_id).where(deliveries.c.id == ref.id)).first()
                if row is not None:
                    return ref.id, row.subscriber_id
            else:
                row = connection.execute(select(subscribers.c.id).where(subscribers.c.id == ref.id)).first()
                if row is not None:
                    return None, ref.id
        if trusted and result.recipient:
            try:
                key = parse_address(result.recipient).key  # an IDNA domain in a bounce is stored in Unicode
            except InvalidAddressError:
                key = result.recipient.lower()
            row = connection.execute(select(subscribers.c.id).where(subscribers.c.email_key == key)).first()
            if row is not None:
                return None, row.id
        return None, None

    def _apply(self, connection: Connection, kind: str, result: Classification, event_id: int,
               subscriber_id: int | None, delivery_id: int | None, now: datetime) -> Outcome:
        def outcome(action: str, change_id: int | None = None, suppressed: bool = False) -> Outcome:
            return Outcome(action, kind, event_id, subscriber_id, delivery_id, change_id, suppressed)

        if subscriber_id is None or kind == IGNORED:
            return outcome("recorded")
        email = connection.execute(select(subscribers.c.email_key).where(subscribers.c.id == subscriber_id)).scalar_one()
        if kind == UNSUBSCRIBE:
            change = self.store.change_status_for_event(
                connection, subscriber_id, SubscriberStatus.UNSUBSCRIBED, now=now, reason="mailto unsubscribe", event_id=event_id)
            return outcome("unsubscribed" if change else "recorded", change)
        if kind == COMPLAINT:
            change = self.store.change_status_for_event(
                connection, subscriber_id, SubscriberStatus.UNSUBSCRIBED, now=now,
                reason=f"complaint ({result.status or 'abuse'})", event_id=event_id)
            added = self.suppressions.add(email, reason=f"complaint, event {event_id}", source="complaint", now=now,
                                          event_id=event_id, connection=connection)
            return outcome("unsubscribed" if change else "recorded", change, added)
        since = connection.execute(select(subscribers.c.status_changed_at).where(subscribers.c.id == subscriber_id)).scalar_one()
        if kind == HARD:
            count = self.events.count_for(connection, subscriber_id, HARD, since)
            if count < self.policy.hard_limit:
                return outcome("recorded")
            change = self.store.change_status_for_event(
                connection, subscriber_id, SubscriberStatus.BOUNCED, now=now,
                reason=f"{count} hard bounce(s), last {result.status or 'no status'}", event_id=event_id)
            added = self.suppressions.add(email, reason=f"hard bounce {result.status or ''}, event {event_id}".replace("  ", " "),
                                          source="bounce", now=now, event_id=event_id, connection=connection) if change else False
            return outcome("bounced" if change else "recorded", change, added)
        if kind == SOFT:
            count = self.events.count_for(connection, subscriber_id, SOFT, max(since, now - self.policy.soft_window))
            if count < self.policy.soft_limit:
                return outcome("recorded")
            change = self.store.change_status_for_event(
                connection, subscriber_id, SubscriberStatus.BOUNCED, now=now,
                reason=f"{count} soft bounces within {self.policy.soft_window.days} days", event_id=event_id)
            return outcome("bounced" if change else "recorded", change)
        return outcome("recorded")

    # -- the operator's undo

    def revert(self, change_id: int, now: datetime) -> StatusChange:
        """Put a subscriber back as they were before a bounce or complaint changed them, and lift the
        suppression that event added."""
        with self.database.write() as connection:
            change = self.store.revert_change(connection, change_id, now)
            if change.event_id is not None:
                lifted = self.suppressions.remove_for_event(change.event_id, connection)
                log.info("suppressions lifted with change=%s count=%s", change_id, lifted)
        return change


def address_tokens(bounces: BounceSettings, links: LinkSettings, environ: Mapping[str, str] | None = None) -> AddressTokens | None:
    """The AddressTokens of `[bounces]` return_path and unsubscribe_address, signed with the link secret;
    None when both are off. MissingSecretError when they are on and the secret is not set."""
    if bounces.return_path is None and bounces.unsubscribe_address is None:
        return None
    env = os.environ if environ is None else environ
    secret = read_secret(links.secret_env, "signed bounce and unsubscribe addresses", env)
    previous = tuple(s.strip() for s in env.get(links.previous_secrets_env, "").split(",") if s.strip())
    return AddressTokens(secret, previous, return_path=bounces.return_path, unsubscribe=bounces.unsubscribe_address)

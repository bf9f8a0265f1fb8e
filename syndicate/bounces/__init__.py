"""Deliverability feedback: classifying inbound bounces, complaints and unsubscribe mail, and the one processor every inbound path feeds."""

from syndicate.bounces._classify import (
    COMPLAINT,
    EVENT_KINDS,
    HARD,
    IGNORED,
    SOFT,
    UNRECOGNISED,
    UNSUBSCRIBE,
    Classification,
    Classifier,
)
from syndicate.bounces._events import BounceEvent, BounceEvents, Rates, deliverability
from syndicate.bounces._mailbox import BounceMailbox, MailboxError, PollReport
from syndicate.bounces._processor import BouncePolicy, BounceProcessor, Outcome, ProviderEvent, address_tokens
from syndicate.bounces._verp import AddressTokens, TokenRef

__all__ = [
    "COMPLAINT", "EVENT_KINDS", "HARD", "IGNORED", "SOFT", "UNRECOGNISED", "UNSUBSCRIBE",
    "AddressTokens", "BounceEvent", "BounceMailbox", "MailboxError", "PollReport", "BounceEvents", "BouncePolicy", "BounceProcessor", "Classification", "Classifier",
    "Outcome", "ProviderEvent", "Rates", "TokenRef", "address_tokens", "deliverability",
]

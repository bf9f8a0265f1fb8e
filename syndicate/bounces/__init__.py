"""Deliverability feedback: classifying inbound bounces, complaints and unsubscribe mail, and the one processor every inbound path feeds."""

from __future__ import annotations

import os
from collections.abc import Mapping

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
from syndicate.bounces._events import BounceEvent, BounceEvents, Rates
from syndicate.bounces._processor import BouncePolicy, BounceProcessor, Outcome, ProviderEvent, address_tokens
from syndicate.bounces._verp import AddressTokens, TokenRef
from syndicate.config import Settings
from syndicate.storage._database import Database
from syndicate.subscribers._store import SubscriberDefaults, SubscriberStore

__all__ = [
    "COMPLAINT", "EVENT_KINDS", "HARD", "IGNORED", "SOFT", "UNRECOGNISED", "UNSUBSCRIBE",
    "AddressTokens", "BounceEvent", "BounceEvents", "BouncePolicy", "BounceProcessor", "Classification", "Classifier",
    "Outcome", "ProviderEvent", "Rates", "TokenRef", "address_tokens", "settings_tokens", "build_processor",
]


def settings_tokens(settings: Settings, environ: Mapping[str, str] | None = None) -> AddressTokens | None:
    """The address tokens of `[bounces]` (None when VERP and the mailto address are both off)."""
    env = os.environ if environ is None else environ
    return address_tokens(settings.bounces, settings.links.secret_env, settings.links.previous_secrets_env, env)


def build_processor(settings: Settings, database: Database, environ: Mapping[str, str] | None = None) -> BounceProcessor:
    store = SubscriberStore(database, SubscriberDefaults.from_settings(settings))
    return BounceProcessor(database, store, tokens=settings_tokens(settings, environ),
                           policy=BouncePolicy.from_settings(settings.bounces))

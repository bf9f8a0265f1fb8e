"""Subscribers: the store that owns their state, double opt-in, signed links, and CSV import and export."""

from syndicate.subscribers._confirm import ComposeConfirmation, Confirmations, category_names
from syndicate.subscribers._csv import import_csv, read_subscribers, write_subscribers
from syndicate.subscribers._links import PLACEHOLDER_TOKEN, PlaceholderLinks, SignedLinks
from syndicate.subscribers._model import WEEKDAYS, Frequency, Subscriber, SubscriberStatus
from syndicate.subscribers._notices import ComposeNotice, Notices, describe_schedule
from syndicate.subscribers._store import (
    Filter,
    ImportReport,
    InvalidSubscriberError,
    NewSubscriber,
    StoredSubscriber,
    SubscriberDefaults,
    SubscriberExistsError,
    SubscriberStore,
    TransitionError,
    UnknownSubscriberError,
    new_subscriber,
    next_send_time,
    split_categories,
)
from syndicate.subscribers._tokens import InvalidLinkError, LinkSigner, signer_from_settings
from syndicate.subscribers._zones import NotAPlaceError, canonical_zones, geographic_zone

__all__ = [
    "PLACEHOLDER_TOKEN", "WEEKDAYS", "ComposeConfirmation", "ComposeNotice", "NotAPlaceError", "Notices",
    "canonical_zones", "describe_schedule", "geographic_zone", "Confirmations", "Filter", "Frequency", "ImportReport",
    "InvalidLinkError", "InvalidSubscriberError", "LinkSigner", "NewSubscriber", "PlaceholderLinks", "SignedLinks",
    "StoredSubscriber", "Subscriber", "SubscriberDefaults", "SubscriberExistsError", "SubscriberStatus",
    "SubscriberStore", "TransitionError", "UnknownSubscriberError", "category_names", "import_csv", "new_subscriber",
    "next_send_time", "read_subscribers", "signer_from_settings", "split_categories", "write_subscribers",
]

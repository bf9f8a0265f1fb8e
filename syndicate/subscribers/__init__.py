"""Subscribers: the store that owns their state, double opt-in, signed links, and CSV import and export."""

from syndicate.subscribers._address import Address, AddressRules, InvalidAddressError, envelope_of, parse_address
from syndicate.subscribers._confirm import ComposeConfirmation, Confirmations, category_names
from syndicate.subscribers._csv import ImportInterrupted, import_csv, read_subscribers, write_subscribers
from syndicate.subscribers._links import PLACEHOLDER_TOKEN, PlaceholderLinks, SignedLinks
from syndicate.subscribers._model import WEEKDAYS, Frequency, Subscriber, SubscriberStatus
from syndicate.subscribers._store import (
    Filter,
    ImportReport,
    InvalidSubscriberError,
    NewSubscriber,
    StoredSubscriber,
    SubscriberDefaults,
    SubscriberExistsError,
    SubscriberStore,
    SubscriberWrites,
    TransitionError,
    UnknownSubscriberError,
    new_subscriber,
    next_send_time,
    split_categories,
)
from syndicate.subscribers._tokens import InvalidLinkError, LinkSigner, signer_from_settings

__all__ = [
    "PLACEHOLDER_TOKEN", "WEEKDAYS", "Address", "AddressRules", "ComposeConfirmation", "Confirmations", "Filter",
    "Frequency", "ImportInterrupted", "ImportReport", "InvalidAddressError", "InvalidLinkError", "InvalidSubscriberError", "LinkSigner",
    "NewSubscriber", "PlaceholderLinks", "SignedLinks", "StoredSubscriber", "Subscriber", "SubscriberDefaults",
    "SubscriberExistsError", "SubscriberStatus", "SubscriberStore", "SubscriberWrites", "TransitionError",
    "UnknownSubscriberError", "category_names", "envelope_of", "import_csv", "new_subscriber", "next_send_time",
    "parse_address", "read_subscribers", "signer_from_settings", "split_categories", "write_subscribers",
]

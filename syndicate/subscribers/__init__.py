"""Subscribers: the store that owns their state, double opt-in, signed links, and CSV import and export."""

from syndicate.subscribers._address import Address, AddressRules, InvalidAddressError, envelope_of, parse_address
from syndicate.subscribers._confirm import ComposeConfirmation, Confirmations, category_names
from syndicate.subscribers._csv import (
    ImportInterrupted,
    import_confirmed_csv,
    import_csv,
    read_backup,
    read_subscribers,
    restore_csv,
    utf8_lines,
    write_subscribers,
)
from syndicate.subscribers._links import PLACEHOLDER_TOKEN, PlaceholderLinks, SignedLinks
from syndicate.subscribers._model import WEEKDAYS, Frequency, Subscriber, SubscriberStatus
from syndicate.subscribers._notices import ComposeNotice, Notices, describe_schedule
from syndicate.subscribers._store import (
    Filter,
    ImportReport,
    InvalidSubscriberError,
    NewSubscriber,
    RestoredSubscriber,
    StatusChange,
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
from syndicate.subscribers._suppression import SuppressedSet, Suppression, SuppressionList, parse_entry
from syndicate.subscribers._tokens import InvalidLinkError, LinkSigner, signer_from_settings
from syndicate.subscribers._zones import NotAPlaceError, canonical_zones, geographic_zone

__all__ = [
    "ComposeNotice", "NotAPlaceError", "Notices", "canonical_zones", "describe_schedule", "geographic_zone",
    "PLACEHOLDER_TOKEN", "WEEKDAYS", "Address", "AddressRules", "ComposeConfirmation", "Confirmations", "Filter",
    "Frequency", "ImportInterrupted", "ImportReport", "InvalidAddressError", "InvalidLinkError", "InvalidSubscriberError", "LinkSigner",
    "NewSubscriber", "PlaceholderLinks", "SignedLinks", "StoredSubscriber", "Subscriber", "SubscriberDefaults",
    "SubscriberExistsError", "SubscriberStatus", "SubscriberStore", "SubscriberWrites", "TransitionError",
    "StatusChange", "SuppressedSet", "Suppression", "SuppressionList", "parse_entry",
    "UnknownSubscriberError", "category_names", "envelope_of", "import_csv", "new_subscriber", "next_send_time",
    "parse_address", "read_subscribers", "signer_from_settings", "split_categories", "write_subscribers",
    # issue 17: backups that round-trip
    "RestoredSubscriber", "import_confirmed_csv", "read_backup", "restore_csv", "utf8_lines",
]

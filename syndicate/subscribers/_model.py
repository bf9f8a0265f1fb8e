"""The subscriber as the digest and delivery stages see them, with its status and frequency."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from syndicate.subscribers._address import Address


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class Frequency(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class Subscriber:
    """A subscriber as the digest and delivery stages see them.

    `categories` are category slugs; `weekday` is 0 for Monday (weekly digests);
    `high_water` is the newest article time already delivered to them (None before
    their first digest).
    """

    id: int
    email: str
    name: str | None
    status: SubscriberStatus
    categories: tuple[str, ...]
    frequency: Frequency
    timezone: str
    send_hour: int
    weekday: int = 0
    high_water: datetime | None = None
    source: str = "cli"
    created_at: datetime | None = None
    status_changed_at: datetime | None = None

    @property
    def address(self) -> Address:
        """`email` (the normalised text the Address made when it entered) as that Address again."""
        return Address.stored(self.email)

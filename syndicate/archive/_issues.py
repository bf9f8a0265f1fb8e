"""The archive's values: the articles each period's digests showed (no SQL here: the pages are made from these)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ArchiveItem:
    """One article as a digest of the period showed it."""

    article_id: str
    title: str
    url: str
    first_sent_at: datetime


@dataclass(frozen=True)
class ArchiveIssue:
    """The digests of one period (a day, or an ISO week for weekly digests): per category slug, the articles."""

    frequency: str
    period: str
    sections: tuple[tuple[str, tuple[ArchiveItem, ...]], ...]

    @property
    def sent_at(self) -> datetime:
        return max(item.first_sent_at for _, items in self.sections for item in items)

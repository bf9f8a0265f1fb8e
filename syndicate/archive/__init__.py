"""The public archive of the digests as sent: what each day's (or week's) digests contained, per category."""

from syndicate.archive._build import ArchiveReport, build_archive, period_label
from syndicate.archive._issues import ArchiveIssue, ArchiveItem

__all__ = ["ArchiveIssue", "ArchiveItem", "ArchiveReport", "build_archive", "period_label"]

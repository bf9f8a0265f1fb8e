"""The public archive of the digests as sent: what each day's (or week's) digests contained, per category."""

from syndicate.archive._build import ArchiveReport, build_archive, period_label
from syndicate.archive._collect import ArchiveIssue, ArchiveItem, collect_sent, load_issues

__all__ = ["ArchiveIssue", "ArchiveItem", "ArchiveReport", "build_archive", "collect_sent", "load_issues", "period_label"]

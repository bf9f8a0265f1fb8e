"""The audit log: who did what to which subscriber, delivery, run or campaign, and when (operators' actions)."""

from syndicate.audit._log import AuditEntry, AuditLog

__all__ = ["AuditEntry", "AuditLog"]

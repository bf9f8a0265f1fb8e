"""Delivery: plans runs into the outbox and sends them through a mail backend, exactly once."""

from syndicate.delivery._outbox import Failure, FailureGroup, Outbox, Requeued, RunReport, WaitingRetry
from syndicate.delivery._service import DeliveryService, SendRequest

__all__ = ["DeliveryService", "Failure", "FailureGroup", "Outbox", "Requeued", "RunReport", "SendRequest", "WaitingRetry"]

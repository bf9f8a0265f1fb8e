"""Delivery: plans runs into the outbox and sends them through a mail backend, exactly once."""

from syndicate.delivery._liveness import deployment_state, require_workers_database  # workers mode (issue 14)
from syndicate.delivery._outbox import Failure, FailureGroup, Outbox, Requeued, RunReport, WaitingRetry
from syndicate.delivery._service import DeliveryConfig, DeliveryService, SendRequest
from syndicate.delivery._worker import CountingOutbox, Worker, observed_backends, worker_metrics

__all__ = [
    "CountingOutbox", "DeliveryConfig", "DeliveryService", "Failure", "FailureGroup", "Outbox", "Requeued", "RunReport", "SendRequest",
    "WaitingRetry", "Worker", "deployment_state", "observed_backends", "require_workers_database", "worker_metrics",
]

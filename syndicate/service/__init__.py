"""The running service: the scheduler under its lease, the HTTP server and the jobs that build and send."""

from syndicate.service._lease import Lease, LeaseHolder, LeaseKeeper
from syndicate.service._scheduler import JobSpec, Scheduler, delivery_jobs
from syndicate.service._service import Bound, Service
from syndicate.wiring import ServiceSecret, environ_with, service_secrets  # the secrets live in the composition root

__all__ = [
    "Bound", "JobSpec", "Lease", "LeaseHolder", "LeaseKeeper", "Scheduler", "Service", "ServiceSecret",
    "delivery_jobs", "environ_with", "service_secrets",
]

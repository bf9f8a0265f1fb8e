"""Prometheus metrics of a service or worker process: the one package that imports prometheus_client.

Each process has its own `Metrics` (its own registry, no global state). Counters and histograms
are what this process did; the outbox gauges (queue depth, runs in flight, live workers, the
scheduler lease holder) are read from the database at each scrape, so every process reports the
same deployment-wide values. docs/operations.md lists each metric with an alert worth setting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics", "OutboxGauges"]

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BUILD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """This process's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Counter("syndicate_deliveries", "Deliveries ended by this process, by outcome "
                                  "(sent, retry, failed, skipped, released back to the queue)", ["outcome"], registry=r)
        self.smtp_replies = Counter("syndicate_smtp_replies", "SMTP replies to this process's messages by code class "
                                    "(2xx, 4xx, 5xx; none: connection lost or timeout)", ["code_class"], registry=r)
        self.claim_seconds = Histogram("syndicate_claim_seconds", "Time to claim one batch of deliveries",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.send_seconds = Histogram("syndicate_send_seconds", "Time from handing a message to the mail backend to "
                                      "its reply", buckets=_LATENCY_BUCKETS, registry=r)
        self.recovered = Counter("syndicate_recovered_deliveries", "Deliveries of lost workers this process put back "
                                 "per [outbox] in_flight", registry=r)
        self.build_seconds = Histogram("syndicate_build_seconds", "Duration of a site build (feeds and pages)",
                                       buckets=_BUILD_BUCKETS, registry=r)

    def delivered(self, outcome: str, code: int | None) -> None:
        self.deliveries.labels(outcome).inc()
        if outcome in ("sent", "retry", "failed"):
            self.smtp_replies.labels(f"{code // 100}xx" if code else "none").inc()

    def watch(self, collector: Collector) -> None:
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """The text format, for a /metrics route."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> Any:
        """Serve /metrics on host:port from a daemon thread; returns the server (call shutdown())."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics on http://%s:%s/metrics", host, server.server_port)
        return server


class OutboxGauges(Collector):
    """Deployment-wide gauges read from the database at each scrape (a failed read is logged and skipped)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        """`read()` returns {"queue": {status: count}, "runs_in_flight": n, "workers": n,
        "lease": (host, pid) or None}."""
        self.read = read

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            values = self.read()
        except Exception as e:  # a scrape reports what it can, never fails the process
            log.warning("metrics: cannot read the outbox: %s", e)
            return
        queue = GaugeMetricFamily("syndicate_outbox_deliveries", "Deliveries open in the outbox, by status",
                                  labels=["status"])
        for status, count in sorted(values["queue"].items()):
            queue.add_metric([status], count)
        yield queue
        yield GaugeMetricFamily("syndicate_runs_in_flight", "Runs planned and not finished", value=values["runs_in_flight"])
        yield GaugeMetricFamily("syndicate_workers_alive", "syndicate worker processes with a recent heartbeat",
                                value=values["workers"])
        lease = GaugeMetricFamily("syndicate_scheduler_lease_holder", "1 for the process holding the scheduler lease "
                                  "(none: no scheduler runs)", labels=["host", "pid"])
        if values["lease"] is not None:
            host, pid = values["lease"]
            lease.add_metric([host, str(pid)], 1)
        yield lease

"""`syndicate worker`: send the digests the service plans, from any host that has the config and PostgreSQL's URL."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
import threading
import time
from typing import Any

import click

from syndicate.cli import AppContext, pass_app
from syndicate.config import Settings
from syndicate.content import event_on_signals
from syndicate.delivery import Worker, require_workers_database, worker_metrics
from syndicate.wiring import Components

log = logging.getLogger(__name__)

HELP = """Claim digests planned in the outbox (by the scheduler, `syndicate send` or the API) and send them.

Needs `[delivery] mode = "workers"` and PostgreSQL. Run as many as you like, on any hosts:
[smtp] rate, connections and domain_rate hold for all of them together. SIGTERM (or Ctrl-C)
finishes the messages in flight and puts the rest back in the queue; after kill -9 or a lost
host, the other workers resend its unrecorded messages (same Message-ID) once its heartbeat is
older than [outbox] claim_timeout ([outbox] in_flight = "fail": they are marked failed instead).
"""

RESTART_DELAY = 1.0


@click.command("worker", help=HELP)
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="SMTP connections per process (taken from [smtp] connections, shared by every worker).")
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes to start (each with --concurrency connections).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus /metrics here (process i of --processes on port + i).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics listen on.")
@pass_app
def worker(app: AppContext, concurrency: int, processes: int, metrics_port: int | None, metrics_host: str) -> None:
    settings = app.settings
    require_workers_database(settings.delivery.mode, settings.database.url)
    if processes == 1:
        code = _work(settings, concurrency, metrics_host, metrics_port)
    else:
        code = _supervise(settings, concurrency, processes, metrics_host, metrics_port)
    if code:
        click.get_current_context().exit(code)


def _work(settings: Settings, concurrency: int, metrics_host: str, metrics_port: int | None) -> int:
    """One worker in this process until SIGTERM or SIGINT; exit status 1 when it was fenced off."""
    with event_on_signals(threading.Event(), signal.SIGTERM, signal.SIGINT) as stop:
        return _work_until(stop, settings, concurrency, metrics_host, metrics_port)


def _work_until(stop: threading.Event, settings: Settings, concurrency: int, metrics_host: str,
                metrics_port: int | None) -> int:
    components = Components(settings)
    server = None
    try:
        runner = Worker(components.delivery, mode=settings.delivery.mode, concurrency=concurrency, environ=dict(components.environ))
        if metrics_port is not None:
            server = worker_metrics(settings.outbox, components.database, runner.metrics).serve(metrics_host, metrics_port)
        tally = runner.run(stop)
        click.echo(f"worker {runner.id} stopped: " + (", ".join(f"{k} {v}" for k, v in sorted(tally.items())) or "nothing sent"),
                   err=True)
        return 1 if runner.fenced else 0
    finally:
        if server is not None:
            server.shutdown()
        components.close()


def _child(settings: Settings, concurrency: int, metrics_host: str, metrics_port: int | None) -> None:
    sys.exit(_work(settings, concurrency, metrics_host, metrics_port))


def _supervise(settings: Settings, concurrency: int, processes: int, metrics_host: str, metrics_port: int | None) -> int:
    """Start `processes` workers (forked: no thread or database connection exists yet); restart one
    that dies; on SIGTERM or SIGINT pass SIGTERM on and wait for all of them."""
    context = multiprocessing.get_context("fork")
    stopping: list[int] = []  # the signals received; appending takes no lock a signal could find held
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda received, _: stopping.append(received))

    def start(index: int) -> Any:
        port = None if metrics_port is None else (metrics_port + index if metrics_port else 0)
        process = context.Process(target=_child, args=(settings, concurrency, metrics_host, port),
                                  name=f"syndicate-worker-{index}")
        process.start()
        log.info("worker process started index=%s pid=%s", index, process.pid)
        return process

    children = [start(i) for i in range(processes)]
    while not stopping:
        time.sleep(0.5)
        for index, process in enumerate(children):
            if not stopping and not process.is_alive():
                log.warning("worker process exited index=%s pid=%s code=%s: restarting in %ss",
                            index, process.pid, process.exitcode, RESTART_DELAY)
                time.sleep(RESTART_DELAY)
                if not stopping:
                    children[index] = start(index)
    for process in children:
        if process.is_alive() and process.pid is not None:
            process.terminate()  # SIGTERM: finish in flight, release the rest
    for process in children:
        process.join()
    return max((p.exitcode or 0) for p in children)

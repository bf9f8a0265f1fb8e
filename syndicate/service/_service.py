"""The running service: database, outbox recovery, feeds, the scheduler under its lease, and the HTTP server.

`syndicate run` (syndicate/cli/run.py) drives it: `Service.open()`, `bind()`, `serve()` (until
SIGTERM or SIGINT), `close()`. On a signal the service stops taking new work, the message in
flight finishes (the scheduler's stop event reaches DeliveryService.work), the scheduler shuts
down, the lease is released, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from syndicate.config import Settings
from syndicate.content import CorpusMemory
from syndicate.delivery import DeliveryService
from syndicate.errors import SyndicateError
from syndicate.service._lease import Lease, LeaseKeeper
from syndicate.service._scheduler import JobSpec, Scheduler, delivery_jobs
from syndicate.site import BuildReport, build_site
from syndicate.storage import Database, DatabaseError
from syndicate.web.app import create_app
from syndicate.wiring import Components, utc_now

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the service

@dataclass(frozen=True)
class Bound:
    """The listening socket and the address it really got (port 0 picks a free one)."""

    sock: socket.socket
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class Service:
    """One running syndicate: call open(), bind(), serve() (blocks until a signal), close()."""

    def __init__(self, settings: Settings, *, environ: Mapping[str, str], scheduler: bool = True,
                 around_build: Callable[[], AbstractContextManager[object]] = nullcontext) -> None:
        """`around_build`: what each rebuild runs inside (the entry point's garbage-collector
        setting: `syndicate run` pauses the collector while a rebuild makes its objects)."""
        self.settings = settings
        self.around_build = around_build
        self.environ = dict(environ)
        self.scheduler_wanted = scheduler and settings.schedule.enabled
        self.stopping = threading.Event()
        self.database: Database | None = None
        self.delivery: DeliveryService | None = None
        self.keeper: LeaseKeeper | None = None
        self._scheduler: Scheduler | None = None
        self._scheduler_lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self.resumer: threading.Thread | None = None  # works the runs a crash left queued (see open())
        self.articles = CorpusMemory()  # the rebuilds and the web app re-read only changed articles
        self.components = Components(settings, environ=self.environ)

    # -- start-up

    def open(self, now: datetime | None = None) -> BuildReport:
        """Open (and migrate) the database, recover the outbox after a crash, build the feeds."""
        now = now or utc_now()
        self.database = self.components.database
        self.delivery = self.components.delivery
        recovered = self.delivery.recover(now)
        if recovered:
            log.info("outbox recovered %d deliveries left in flight by the last run", recovered)
        report = self.rebuild()
        if self.delivery is not None:  # after the build: the article cache is fresh, so the two never both write it
            self.resumer = threading.Thread(target=self._resume, name="outbox-resume", daemon=True)
            self.resumer.start()
        return report

    def _resume(self) -> None:
        """Runs a crash left with queued deliveries continue at once (the retry job would wait
        ABANDONED_AFTER); a signal stops them after the message in flight."""
        assert self.delivery is not None
        try:
            reports = self.delivery.resume(stop=self.stopping)
        except Exception:  # the retry job resumes them later; the service keeps running
            log.exception("resuming interrupted runs failed; the retry job will pick them up")
            return
        for report in reports:
            log.info("resumed run=%s status=%s sent=%s retrying=%s failed=%s",
                     report.run_id, report.status, report.sent, report.retrying, report.failed)

    def rebuild(self) -> BuildReport:
        with self.around_build():
            report = build_site(self.settings, self.components.content, memory=self.articles)
        for problem in report.problems:
            log.warning("build problem: %s", problem)
        return report

    def jobs(self) -> tuple[JobSpec, ...]:
        assert self.delivery is not None, "open() first"
        return delivery_jobs(self.settings, self.delivery, self.rebuild)

    def start_scheduler(self) -> None:
        """Take part in the scheduler lease: run the scheduler while holding it, stand by otherwise."""
        if not self.scheduler_wanted:
            log.info("scheduler disabled in this process")
            return
        assert self.database is not None, "open() first"
        lease = Lease(self.database, seconds=self.settings.schedule.lease_seconds)
        self.keeper = LeaseKeeper(lease, on_acquired=self._scheduler_up, on_lost=self._scheduler_down)
        self.keeper.start()

    def _scheduler_up(self) -> None:
        assert self.database is not None
        with self._scheduler_lock:
            if self.stopping.is_set() or self._scheduler is not None:
                return
            scheduler = Scheduler(self.database, self.jobs(), misfire_grace=self.settings.schedule.misfire_grace)
            scheduler.start()
            self._scheduler = scheduler

    def _scheduler_down(self) -> None:
        with self._scheduler_lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=True)

    def status(self) -> dict[str, Any]:
        """The scheduler's side of /healthz and /api/status: whether it runs here or stands by
        (`running` is what /healthz checks), the lease holder and the jobs with their next runs."""
        scheduler = self._scheduler
        if not self.scheduler_wanted:
            state = "disabled"
        elif scheduler is not None and scheduler.running:
            state = "running"
        else:
            state = "standby"
        holder = None
        if self.keeper is not None:
            try:
                holder = self.keeper.lease.holder()
            except (SQLAlchemyError, DatabaseError) as e:  # a status report reports, never raises
                log.warning("status: cannot read the scheduler lease: %s", e)
        return {
            "running": not self.scheduler_wanted or (self.keeper is not None and self.keeper.alive),
            "state": state,
            "lease": None if holder is None else {
                "host": holder.host, "pid": holder.pid, "expires_at": holder.expires_at.isoformat(),
                "this_process": self.keeper is not None and holder.owner == self.keeper.lease.owner,
            },
            "jobs": [
                {"id": job.id, "interval_seconds": job.seconds,
                 "next_run_at": job.next_run_at.isoformat() if job.next_run_at else None}
                for job in (scheduler.job_infos() if scheduler is not None else [])
            ],
        }

    # -- HTTP

    def bind(self, host: str, port: int) -> Bound:
        """Listen on host:port now, so the printed addresses are the real ones (port 0 included)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError as e:
            sock.close()
            raise SyndicateError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                                 hint="is another process using that port? pass --port (0 picks a free one)") from e
        sock.set_inheritable(True)
        return Bound(sock, host, sock.getsockname()[1])

    def app(self) -> Any:
        """The HTTP application (syndicate.web.app) over this service's database, delivery and scheduler."""
        assert self.database is not None, "open() first"
        return create_app(self.components, delivery=self.delivery, scheduler_status=self.status,
                          corpus_memory=self.articles)

    def serve(self, bound: Bound) -> None:
        """Serve HTTP until SIGTERM or SIGINT (uvicorn finishes the requests in progress)."""
        # proxy_headers off: uvicorn would believe X-Forwarded-For from any local peer; the app reads it
        # only from the proxies in [http] trusted_proxies (syndicate.abuse.client_address).
        config = uvicorn.Config(self.app(), log_config=None, access_log=False, lifespan="on",
                                proxy_headers=False, server_header=False)
        self._server = uvicorn.Server(config)
        if self.stopping.is_set():  # a signal came during start-up
            return
        log.info("serving on %s", bound.base_url)
        self._server.run(sockets=[bound.sock])
        self.stopping.set()

    def handle_signals(self) -> None:
        """From now on SIGTERM and SIGINT stop the service cleanly (call first thing, from the main
        thread). uvicorn captures them while it serves and re-raises them here when it is done."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stopping.set()
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.stop_event.set()  # no new job starts; the one running stops after its message in flight
        if self._server is not None:
            self._server.should_exit = True

    # -- shut-down

    def close(self) -> None:
        """Stop taking new work, let the message in flight finish, stop the scheduler, release the lease."""
        self.stopping.set()
        if self.keeper is not None:
            self.keeper.stop()
        else:
            self._scheduler_down()
        if self.resumer is not None:
            self.resumer.join()  # stops after its message in flight (it watches self.stopping)
        if self.database is not None:
            self.components.close()
        log.info("stopped cleanly")


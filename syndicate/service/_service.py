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
import time
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from syndicate.archive import build_archive
from syndicate.config import Settings
from syndicate.content import CorpusMemory, event_on_signals, snapshot_path
from syndicate.delivery import CountingOutbox, DeliveryService, observed_backends, require_workers_database
from syndicate.errors import SyndicateError
from syndicate.metrics import Metrics
from syndicate.service._lease import Lease, LeaseKeeper
from syndicate.service._scheduler import BOUNCE_MAILBOX, JobSpec, Scheduler, delivery_jobs, source_jobs
from syndicate.service._watch import ContentWatcher
from syndicate.site import BuildReport, build_site
from syndicate.sources import Sources
from syndicate.storage import Database, DatabaseError
from syndicate.web.app import create_app
from syndicate.websub import HubNotifier, changed_feed_urls
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


def listen(host: str, port: int) -> Bound:
    """Listen on host:port now, so the printed addresses (and the demo's links) are the real ones (port 0 included)."""
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


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
CAMPAIGNS_JOB = "campaigns"


def with_bound_port(settings: Settings, bound: Bound) -> Settings:
    """`settings` with `[site] base_url` on the bound port when it names this machine's loopback
    address (the demo's default): links in pages and emails then lead to the running service.
    A public base_url (behind a proxy) is left alone."""
    parts = urlsplit(settings.site.base_url)
    if parts.hostname not in LOOPBACK_NAMES or parts.port == bound.port:
        return settings
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    base_url = urlunsplit(parts._replace(netloc=f"{host}:{bound.port}"))
    return settings.model_copy(update={"site": settings.site.model_copy(update={"base_url": base_url})})


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
        self._signals = ExitStack()  # the signal handling handle_signals() put in place
        self.database: Database | None = None
        self.delivery: DeliveryService | None = None
        self.keeper: LeaseKeeper | None = None
        self._scheduler: Scheduler | None = None
        self._scheduler_lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self.resumer: threading.Thread | None = None  # works the runs a crash left queued (see open())
        self.articles = CorpusMemory()  # the rebuilds and the web app re-read only changed articles
        self.components = Components(settings, environ=self.environ)
        self.metrics: Metrics | None = None  # this process's /metrics (open() makes it)
        # issue 15: other sites' feeds, the content watcher, WebSub announcements
        self.sources: Sources | None = None
        self.watcher: ContentWatcher | None = None
        self.hubs = HubNotifier(settings.websub.hubs, retries=settings.websub.retries, timeout=settings.websub.timeout)
        self._build_lock = threading.Lock()  # the watcher, the scheduler and start-up take turns

    # -- start-up

    def open(self, now: datetime | None = None) -> BuildReport:
        """Open (and migrate) the database, recover the outbox after a crash, build the feeds."""
        now = now or utc_now()
        require_workers_database(self.settings.delivery.mode, self.settings.database.url)
        self.database = self.components.database
        self.delivery = self.components.delivery
        self.metrics = self.components.metrics
        if self.inline:  # this process sends: its outcomes and SMTP replies count in its metrics
            self.delivery.outbox = CountingOutbox(self.database, self.settings.outbox, self.metrics,
                                                  subscribers=self.delivery.store)
            self.delivery.backend_factory = observed_backends(self.delivery.backend_factory, self.metrics)
        recovered = self.delivery.recover(now)
        if recovered:
            log.info("outbox recovered %d deliveries left in flight by the last run", recovered)
        if self.settings.sources:
            self.sources = self.components.sources
            self._publish_sources()
        report = self.rebuild()
        if self.inline:  # after the build: the article cache is fresh, so the two never both write it
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

    @property
    def inline(self) -> bool:
        """Whether this service sends ([delivery] mode = "inline") or only plans (workers send)."""
        return self.settings.delivery.mode == "inline"

    def rebuild(self, changed: Collection[str] | None = None) -> BuildReport:
        """Bring the output up to date: every article and output looked at, or (`changed`, from
        the watcher) only the files that changed (syndicate.site.build_site)."""
        started = time.monotonic()
        with self._build_lock, self.around_build():
            report = build_site(self.components.build_settings, self.components.content, memory=self.articles, changed=changed)
        if self.metrics is not None:
            self.metrics.build_seconds.observe(time.monotonic() - started)
        for problem in report.problems:
            log.warning("build problem: %s", problem)
        self.hubs.submit(changed_feed_urls(report.written, base_url=self.settings.site.base_url,
                                           feeds_folder=self.settings.feeds.folder))
        if self.database is not None and self.settings.output.pages:
            try:  # the archive of what was sent (syndicate.archive); its failure never stops the site's build
                build_archive(self.settings, self.components.content, self.database, utc_now(), memory=self.articles)
            except Exception:
                log.exception("archive build failed; the next rebuild tries again")
        return report

    def _publish_sources(self) -> None:
        """The sources' snapshot from the database, as the config now says (titles, categories, enabled)."""
        assert self.sources is not None
        try:
            self.sources.publish()
        except Exception:  # the last snapshot stays published; the next fetch writes it again
            log.exception("cannot publish the sources' articles")

    def jobs(self) -> tuple[JobSpec, ...]:
        assert self.delivery is not None, "open() first"
        jobs = delivery_jobs(self.settings, self.delivery, self.rebuild)
        mailbox = self.components.bounce_mailbox()  # deliverability (#13)
        if mailbox is not None:
            def poll(now: datetime, stop: threading.Event) -> None:
                mailbox.poll(now)

            jobs += (JobSpec(BOUNCE_MAILBOX, self.settings.bounces.imap.interval, poll),)
        campaigns = self.components.campaigns
        # issue 17: scheduled campaigns go out within a minute of their time
        jobs += (JobSpec(CAMPAIGNS_JOB, 60, lambda now, stop: campaigns.send_due(now, stop)),)
        return jobs + (source_jobs(self.sources, self.rebuild) if self.sources is not None else ())

    def start_watching(self) -> None:
        """Rebuild as soon as the content folder (or the sources' snapshot) changes, in this process
        whether it holds the scheduler lease or not ([watch] enabled)."""
        if not self.settings.watch.enabled:
            log.info("content watching disabled; rebuilding every %d s", self.settings.schedule.rebuild_interval)
            return
        folders = [self.settings.content.folder]
        if self.settings.sources:
            folders.append(snapshot_path(self.settings.var_folder).parent)
        self.watcher = ContentWatcher(folders, self.rebuild, debounce_ms=self.settings.watch.debounce_ms)
        self.watcher.start()

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
        return listen(host, port)

    def app(self) -> Any:
        """The HTTP application (syndicate.web.app) over this service's database, delivery and scheduler."""
        assert self.database is not None, "open() first"
        return create_app(self.components, delivery=self.delivery, scheduler_status=self.status,
                          corpus_memory=self.articles, metrics=self.metrics)

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
        thread). The handler only wakes a thread that does the stopping (see event_on_signals: a
        handler that set an event itself could wait forever for a lock its own thread holds).
        uvicorn captures the signals while it serves and re-raises them here when it is done."""
        self._signals.enter_context(event_on_signals(self.stopping, signal.SIGTERM, signal.SIGINT, then=self._on_signal))

    def _on_signal(self, signum: int) -> None:
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
        if self.watcher is not None:
            self.watcher.stop()
        self.hubs.close()
        if self.keeper is not None:
            self.keeper.stop()
        else:
            self._scheduler_down()
        if self.resumer is not None:
            self.resumer.join()  # stops after its message in flight (it watches self.stopping)
        if self.database is not None:
            self.components.close()
        if threading.current_thread() is threading.main_thread():
            self._signals.close()
        log.info("stopped cleanly")


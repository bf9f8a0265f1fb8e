"""`syndicate send`: a manual send, now, through the outbox (so it never repeats a scheduled one)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from syndicate.cli import AppContext, pass_app
from syndicate.cli._collector import collector_paused
from syndicate.cli._output import confirm
from syndicate.delivery import DeliveryService, RunReport, SendRequest, require_workers_database
from syndicate.subscribers import Frequency
from syndicate.wiring import Components

HELP = """Send the digests due now to every active subscriber who matches, whatever their send hour.

Every digest is recorded in the outbox before it is sent, so a digest a scheduled run already
sent (or has under way) is never sent again, and an interrupted send is finished by the next
one: run `syndicate send` again after a crash or Ctrl-C and it resumes the unfinished runs.

A digest that was being handed to the server when the process died may or may not have
arrived. With `[outbox] in_flight = "resend"` (the default, nothing is lost) it is sent again
with the same Message-ID, so mail systems can drop the copy; with "fail" it is marked failed.

Exit status 1 when any digest failed permanently (see `syndicate status`); 3 when nothing was
delivered because every digest is waiting for a retry (the mail server refused them for now; the
scheduler, or the next `syndicate send`, retries them); 2 for a configuration or database problem,
found before anything is recorded.
"""
EXIT_ALL_RETRYING = 3


@click.command("send", help=HELP)
@click.option("--frequency", type=click.Choice([f.value for f in Frequency]), default=None,
              help="Only subscribers with this frequency.")
@click.option("--category", "categories", multiple=True, metavar="SLUG",
              help="Only subscribers following this category (repeat for any of several).")
@click.option("--subscriber", default=None, metavar="EMAIL", help="Only this subscriber.")
@click.option("--to", "test_to", default=None, metavar="EMAIL",
              help="Mail one test copy of the digest (of --subscriber, or of --category) here; change nothing.")
@click.option("--dry-run", is_flag=True, help="List who would get what; send nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before sending.")
@click.option("--wait", is_flag=True,
              help='[delivery] mode = "workers": show the run\'s progress until the workers have sent it.')
@pass_app
def send(app: AppContext, frequency: str | None, categories: tuple[str, ...], subscriber: str | None,
         test_to: str | None, dry_run: bool, yes: bool, wait: bool) -> None:
    settings = app.settings
    require_workers_database(settings.delivery.mode, settings.database.url)
    request = SendRequest(Frequency(frequency) if frequency else None, categories, subscriber, dry_run, test_to)
    now = datetime.now(UTC)
    components = Components(settings)
    try:
        service = components.delivery
        if test_to is not None:
            _test_copy(service, request, test_to, now)
        elif dry_run:
            _dry_run(service, request, now)
        else:
            service.check_ready()  # a configuration fault stops here (exit 2), before anything is recorded
            if not yes:
                _ask(len(service.dry_run(request, now)))
            if settings.delivery.mode == "workers":
                reports = _plan_for_workers(service, request, wait)
            else:
                reports = _send(service, request)
            code = _exit_code(reports)
            if code == EXIT_ALL_RETRYING:
                click.echo("every digest is waiting for a retry: none was delivered (see `syndicate status`)", err=True)
            if code:
                click.get_current_context().exit(code)
    finally:
        components.close()


def _test_copy(service: DeliveryService, request: SendRequest, to: str, now: datetime) -> None:
    result = service.send_test_copy(request, to, now)
    click.echo(f"test copy to {to}: {result.outcome} ({reply_text(result.code, result.reply)})")
    if result.outcome != "sent":
        click.get_current_context().exit(1)


def _dry_run(service: DeliveryService, request: SendRequest, now: datetime) -> None:
    """Who `send` would mail (stdout), and who has something new but would not get it, with why (stderr)."""
    sent = 0
    for address, count, held in service.due(request, now):
        if held is None:
            sent += 1
            click.echo(f"{address}\t{count} {'article' if count == 1 else 'articles'}")
        else:
            click.echo(f"not sent: {address}: {held}", err=True)
    click.echo(f"{sent} {'digest' if sent == 1 else 'digests'} would be sent (dry run: nothing sent)", err=True)


def reply_text(code: int | None, reply: str) -> str:
    """A server's reply as `250 OK`, or just the backend's words when there is no SMTP code (file, console)."""
    return f"{code} {reply}".strip() if code is not None else (reply or "-")


def _ask(count: int) -> None:
    if count == 0:
        return
    digests = f"{count} {'digest' if count == 1 else 'digests'}"
    confirm(f"Send {digests} now?", yes=False, refusal=f"refusing to send {digests} without confirmation",
            hint="add --yes to send without asking, or --dry-run to see who would get what")


def _exit_code(reports: list[RunReport]) -> int:
    failed = sum(r.failed for r in reports)
    retrying = sum(r.retrying for r in reports)
    sent = sum(r.sent for r in reports)
    if failed:
        return 1
    if retrying and not sent:
        return EXIT_ALL_RETRYING
    return 0


def _send(service: DeliveryService, request: SendRequest) -> list[RunReport]:
    """Resume unfinished runs, then plan and work this one; returns their reports."""
    reports: list[RunReport] = []
    with _stop_on_signals() as stop, collector_paused():
        recovered = service.recover(datetime.now(UTC))
        if recovered:
            click.echo(f"recovered {recovered} digests in flight when an earlier send stopped", err=True)
        for run_id in service.outbox.runs_with_queued():
            if stop.is_set():
                break
            click.echo(f"resuming run {run_id}", err=True)
            reports.append(_summary(_work(service, run_id, stop)))
        if not stop.is_set():
            # Planned and sent at once (the worker processes start on the first planned digests).
            reports.append(_summary(_work(service, None, stop, request)))
        if stop.is_set():
            click.echo("stopped: run `syndicate send` again to finish", err=True)
    return reports


def _plan_for_workers(service: DeliveryService, request: SendRequest, wait: bool) -> list[RunReport]:
    """[delivery] mode = "workers": plan the run (the workers send it); with `wait`, show its
    progress until it is finished (Ctrl-C stops watching, not the workers). The reports to judge
    the exit status by: none unless the run finished while this command watched."""
    report = service.plan_manual(request, datetime.now(UTC))
    click.echo(f"run {report.run_id}: {report.total} {'digest' if report.total == 1 else 'digests'} planned; "
               "`syndicate worker` processes send them", err=True)
    if report.status == "finished":
        return [_summary(report)]
    if not wait:
        click.echo(f"follow it with `syndicate status` or GET /api/sends/{report.run_id}")
        return []
    with _stop_on_signals() as stop:
        report = _work(service, report.run_id, stop, follow=True)
        if stop.is_set():
            click.echo(f"stopped watching: the workers go on sending run {report.run_id}", err=True)
            return []
    return [_summary(report)]


def _follow(service: DeliveryService, run_id: int, stop: threading.Event,
            progress: Callable[[RunReport], None]) -> RunReport:
    """The run's counts, recounted here (workers recount only every few seconds), every
    FOLLOW_SECONDS until it is finished."""
    report = service.outbox.refresh(run_id, datetime.now(UTC))
    while report.status != "finished" and not stop.wait(FOLLOW_SECONDS):
        report = service.outbox.refresh(run_id, datetime.now(UTC))
        progress(report)
    return report


FOLLOW_SECONDS = 1.0


def _work(service: DeliveryService, run_id: int | None, stop: threading.Event, request: SendRequest | None = None,
          *, follow: bool = False) -> RunReport:
    """Work run `run_id`, or (None) plan and send `request`, showing progress; `follow`: watch
    run `run_id` while workers send it."""
    if sys.stdout.isatty():
        return _work_with_bar(service, run_id, stop, request, follow=follow)
    started, shown = time.monotonic(), [0.0]

    def log_line(report: RunReport) -> None:
        if time.monotonic() - shown[0] >= 2:
            shown[0] = time.monotonic()
            click.echo(f"run {report.run_id}: {_counts(report)} {_rate(report, started)}")

    return _run(service, run_id, stop, request, log_line, follow=follow)


def _run(service: DeliveryService, run_id: int | None, stop: threading.Event, request: SendRequest | None,
         progress: Callable[[RunReport], None], *, follow: bool = False) -> RunReport:
    if follow and run_id is not None:
        return _follow(service, run_id, stop, progress)
    if run_id is not None:
        return service.work(run_id, stop=stop, progress=progress)
    assert request is not None

    def planned(run: RunReport) -> None:
        click.echo(f"run {run.run_id}: {run.total} {'digest' if run.total == 1 else 'digests'} to send", err=True)

    return service.send_manual(request, datetime.now(UTC), stop=stop, progress=progress, planned=planned)


def _work_with_bar(service: DeliveryService, run_id: int | None, stop: threading.Event, request: SendRequest | None,
                   *, follow: bool = False) -> RunReport:
    columns = (
        TextColumn("[bold]run {task.fields[run]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("retrying {task.fields[retrying]}  failed {task.fields[failed]}  {task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    # Refreshed on each progress report, not by rich's thread: a process with threads sends without workers.
    with Progress(*columns, auto_refresh=False) as bar:
        task = bar.add_task("send", total=None, run=run_id or "", retrying=0, failed=0, rate="")

        def update(report: RunReport) -> None:
            bar.update(task, total=report.total, completed=report.sent + report.failed + report.skipped, run=report.run_id,
                       retrying=report.retrying, failed=report.failed, rate=_rate(report, started), refresh=True)

        return _run(service, run_id, stop, request, update, follow=follow)


def _counts(report: RunReport) -> str:
    return (f"sent {report.sent}/{report.total}, retrying {report.retrying}, failed {report.failed}, "
            f"skipped {report.skipped}, queued {report.queued}")


def _rate(report: RunReport, started: float) -> str:
    return f"{report.sent / max(time.monotonic() - started, 1e-6):.0f} msg/s"


def _summary(report: RunReport) -> RunReport:
    click.echo(f"run {report.run_id} {report.status}: {_counts(report)}")
    if report.retrying:
        click.echo(f"  {report.retrying} will be retried later (see `syndicate status`)")
    if report.failed:
        click.echo(f"  {report.failed} failed permanently (see `syndicate status`)")
    return report


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Ctrl-C or SIGTERM: finish the messages in flight, record them, stop (a second Ctrl-C kills)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous: dict[signal.Signals, Any] = {}

    def handler(number: int, frame: Any) -> None:
        stop.set()
        signal.signal(number, previous[signal.Signals(number)])

    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, handler)
    try:
        yield stop
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


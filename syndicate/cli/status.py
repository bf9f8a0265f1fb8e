"""`syndicate status`: recent runs with their counts, deliveries waiting for a retry, permanent failures,
and the sign-ups the abuse limits refused."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from syndicate.cli import AppContext, pass_app
from syndicate.wiring import Components


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


@click.command("status")
@click.option("--runs", "run_limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many recent runs.")
@click.option("--failures", "failure_limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many permanent failures.")
@pass_app
def status(app: AppContext, run_limit: int, failure_limit: int) -> None:
    """Recent runs with their counts, digests waiting for a retry, and permanent failures with reasons."""
    settings = app.settings
    components = Components(settings)
    try:
        service = components.delivery
        runs, retries, failures = service.recent_runs(run_limit), service.waiting_retries(), service.failures(failure_limit)
        refused = components.signup_limits.refusals(datetime.now(UTC))
    finally:
        components.close()
    console = Console(width=None if sys.stdout.isatty() else 160)

    table = Table(title="Recent runs", title_justify="left")
    for name in ("run", "kind", "status", "started", "finished", "total", "sent", "retrying", "failed", "skipped", "queued"):
        table.add_column(name, justify="right" if name in ("run", "total", "sent", "retrying", "failed", "skipped", "queued") else "left")
    for run in runs:
        table.add_row(str(run.run_id), run.kind, run.status, _when(run.started_at), _when(run.finished_at),
                      *(str(getattr(run, name)) for name in ("total", "sent", "retrying", "failed", "skipped", "queued")))
    console.print(table if runs else "No runs yet.")

    table = Table(title="Waiting for a retry", title_justify="left")
    for name in ("delivery", "run", "subscriber", "attempts", "next attempt", "last reply"):
        table.add_column(name)
    for retry in retries:
        table.add_row(str(retry.delivery_id), str(retry.run_id), retry.email, str(retry.attempts),
                      _when(retry.next_attempt_at), retry.last_reply or "")
    console.print(table if retries else "No digest is waiting for a retry.")

    table = Table(title="Permanent failures", title_justify="left")
    for name in ("delivery", "run", "subscriber", "attempts", "failed at", "code", "reason"):
        table.add_column(name)
    for failure in failures:
        table.add_row(str(failure.delivery_id), str(failure.run_id), failure.email, str(failure.attempts),
                      _when(failure.failed_at), str(failure.last_code or "-"), failure.last_reply or "")
    console.print(table if failures else "No permanent failures.")

    reasons = ", ".join(f"{reason} {count}" for reason, count in refused.items())
    console.print(f"Sign-ups refused in the last 24 hours: {sum(refused.values())}" + (f" ({reasons})" if reasons else ""))

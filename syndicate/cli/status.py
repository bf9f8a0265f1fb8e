"""`syndicate status`: recent runs with their counts, deliveries waiting for a retry, permanent failures,
and the sign-ups the abuse limits refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from syndicate.bounces import BounceEvents, deliverability
from syndicate.cli import AppContext, pass_app
from syndicate.cli._output import json_option, print_json, print_table
from syndicate.wiring import Components, utc_now

RUN_COUNTS = ("total", "sent", "retrying", "failed", "skipped", "queued")


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


@click.command("status")
@click.option("--runs", "run_limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many recent runs.")
@click.option("--failures", "failure_limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many permanent failures.")
@json_option
@pass_app
def status(app: AppContext, run_limit: int, failure_limit: int, as_json: bool) -> None:
    """Recent runs with their counts, digests waiting for a retry, and permanent failures with reasons."""
    settings = app.settings
    components = Components(settings)
    try:
        service = components.delivery
        runs, retries, failures = service.recent_runs(run_limit), service.waiting_retries(), service.failures(failure_limit)
        refused = components.signup_limits.refusals(datetime.now(UTC))
        report = deliverability(BounceEvents(components.database), utc_now(),
                                bounce_warning=settings.bounces.bounce_rate_warning,
                                complaint_warning=settings.bounces.complaint_rate_warning)
    finally:
        components.close()
    if as_json:
        print_json({"runs": runs, "retrying": retries, "failures": failures, "signups_refused_24h": refused,
                    "deliverability": report})
        return
    print_table("Recent runs", ("run", "kind", "status", "started", "finished", *RUN_COUNTS),
                [(r.run_id, r.kind, r.status, _when(r.started_at), _when(r.finished_at), *(getattr(r, n) for n in RUN_COUNTS))
                 for r in runs],
                empty="No runs yet.", right=("run", *RUN_COUNTS))
    print_table("Waiting for a retry", ("delivery", "run", "subscriber", "attempts", "next attempt", "last reply"),
                [(r.delivery_id, r.run_id, r.email, r.attempts, _when(r.next_attempt_at), r.last_reply or "") for r in retries],
                empty="No digest is waiting for a retry.")
    print_table("Permanent failures", ("delivery", "run", "subscriber", "attempts", "failed at", "code", "reason"),
                [(f.delivery_id, f.run_id, f.email, f.attempts, _when(f.failed_at), f.last_code or "-", f.last_reply or "")
                 for f in failures],
                empty="No permanent failures.")
    if failures:
        click.echo("requeue with: syndicate deliveries requeue --id N (or --run N)", err=True)
    reasons = ", ".join(f"{reason} {count}" for reason, count in refused.items())
    click.echo(f"Sign-ups refused in the last 24 hours: {sum(refused.values())}" + (f" ({reasons})" if reasons else ""))
    _deliverability(report)


def _deliverability(report: dict[str, Any]) -> None:
    """Bounces and complaints over the last run and 7 days (#13), with a warning line past the thresholds."""
    rows = []
    for period in ("last_run", "last_7_days"):
        row = report.get(period)
        if isinstance(row, dict):
            rows.append((period.replace("_", " "), row["sent"], row["hard"], row["soft"], row["complaints"],
                         f"{row['bounce_rate']:.2%}", f"{row['complaint_rate']:.2%}"))
    print_table("Bounces and complaints", ("period", "sent", "hard", "soft", "complaints", "bounce rate", "complaint rate"),
                rows, empty="No bounces or complaints recorded.",
                right=("sent", "hard", "soft", "complaints", "bounce rate", "complaint rate"))
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}")

"""`syndicate deliveries ...`: failed deliveries grouped by the server's reply, and requeueing them."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from syndicate.cli import AppContext, pass_app
from syndicate.cli._output import json_option, print_json, print_table, run_progress
from syndicate.wiring import Components


@click.group("deliveries")
def deliveries() -> None:
    """Failed deliveries: see them grouped by the server's reply, put them back in the queue."""


@deliveries.command("failures")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
@pass_app
def failures(app: AppContext, limit: int, as_json: bool) -> None:
    """Permanent failures grouped by the server's last reply, the largest group first."""
    components = Components(app.settings)
    try:
        groups = components.delivery.failure_groups(limit)
    finally:
        components.close()
    if as_json:
        print_json(groups)
        return
    print_table(None, ("failed", "code", "last at", "reply"),
                [(g.count, g.code or "-", f"{g.last_at:%Y-%m-%d %H:%M} UTC", g.reply) for g in groups],
                empty="No failed deliveries.", right=("failed",))


@deliveries.command("requeue")
@click.option("--id", "ids", type=click.IntRange(1), multiple=True, metavar="N", help="This failed delivery (repeatable).")
@click.option("--run", "run_id", type=click.IntRange(1), default=None, metavar="N", help="Every failed delivery of run N.")
@click.option("--reply", default=None, metavar="TEXT", help="Every failed delivery whose last server reply is exactly TEXT.")
@click.option("--reason", default=None, metavar="TEXT", help="Why (kept in the audit log with the previous reply).")
@click.option("--send", "send_now", is_flag=True, help="Send them now (otherwise: with the next `syndicate send`, "
              "or the service's retry job within minutes).")
@pass_app
def requeue(app: AppContext, ids: tuple[int, ...], run_id: int | None, reply: str | None, reason: str | None,
            send_now: bool) -> None:
    """Put failed deliveries back in the queue with the same Message-ID and their attempts reset."""
    if not ids and run_id is None and reply is None:
        raise click.UsageError("say which: --id N, --run N or --reply TEXT")
    components = Components(app.settings)
    try:
        service = components.delivery
        now = datetime.now(UTC)
        result = service.requeue(now, delivery_ids=ids, run_id=run_id, reply=reply)
        components.audit.record_many(now, "cli", "delivery.requeue", "delivery", result.delivery_ids, reason or "")
        for delivery_id, why in result.refused:
            click.echo(f"left failed: delivery {delivery_id}: {why}", err=True)
        count = len(result.delivery_ids)
        click.echo(f"requeued {count} {'delivery' if count == 1 else 'deliveries'}"
                   + (f" of run{'s' if len(result.run_ids) > 1 else ''} {', '.join(map(str, result.run_ids))}" if count else ""))
        if count and send_now:
            for touched in result.run_ids:
                with run_progress() as progress:
                    report = service.work(touched, progress=progress)
                click.echo(f"run {report.run_id} {report.status}: sent {report.sent}/{report.total}, "
                           f"retrying {report.retrying}, failed {report.failed}")
        elif count:
            click.echo("they go out with the next `syndicate send` (or add --send)", err=True)
    finally:
        components.close()
    if not ids and run_id is None and reply is not None and not result.delivery_ids and not result.refused:
        raise click.ClickException(f"no failed delivery has the reply {reply!r}")

"""Console pages: subscribers (search, history, edit, unsubscribe, erase, import, export)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams

from syndicate.errors import Problem, UsageError
from syndicate.subscribers import (
    WEEKDAYS,
    Filter,
    Frequency,
    ImportReport,
    InvalidSubscriberError,
    StoredSubscriber,
    Subscriber,
    SubscriberStatus,
    UnknownSubscriberError,
    import_confirmed_csv,
    import_csv,
    read_subscribers,
    restore_csv,
    utf8_lines,
    write_subscribers,
)
from syndicate.web.console._core import (
    IMPORT_PREVIEW_ROWS,
    PAGE_SIZE,
    Console,
    _int,
    _to,
)
from syndicate.web.context import WebContext
from syndicate.wiring import Components

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- subscribers

def _filter(params: QueryParams) -> tuple[str, Filter, dict[str, str]]:
    status, category, frequency = params.get("status") or "", params.get("category") or "", params.get("frequency") or ""
    where = Filter(
        status=SubscriberStatus(status) if status in {s.value for s in SubscriberStatus} else None,
        category=category[:100] or None,
        frequency=Frequency(frequency) if frequency in {f.value for f in Frequency} else None,
    )
    q = (params.get("q") or "")[:200]
    return q, where, {"q": q, "status": status, "category": category, "frequency": frequency}


def subscriber_routes(router: APIRouter, console: Console) -> None:
    components, context = console.components, console.context
    store = components.store

    @router.get("/subscribers")
    def subscribers(request: Request) -> HTMLResponse:
        console.session(request)
        q, where, chosen = _filter(request.query_params)
        after = _int(request.query_params.get("after"), 0) or 0
        page, next_after = store.search(q, where, after=after, limit=PAGE_SIZE)
        values: dict[str, Any] = {"rows": page, "next_after": next_after, "chosen": chosen, "after": after,
                  "next_query": urlencode({**chosen, "after": next_after}) if next_after else "",
                  "statuses": [s.value for s in SubscriberStatus], "frequencies": [f.value for f in Frequency],
                  "categories": context.categories.get(), "notice": request.query_params.get("notice")}
        template = "_subscriber_rows.html.j2" if request.headers.get("hx-request") else "subscribers.html.j2"
        return console.page(request, template, **values)

    @router.get("/subscribers/export.csv")
    def export(request: Request) -> Response:
        _, actor = console.session(request)
        # Spooled to disk past 1 MB and streamed back: a million subscribers take no more memory than ten.
        spool = tempfile.SpooledTemporaryFile(max_size=1 << 20, mode="w+", encoding="utf-8", newline="")  # noqa: SIM115 (closed by chunks())
        count = write_subscribers(store.iter_subscribers(), spool)  # type: ignore[arg-type]
        spool.seek(0)
        console.audit(actor, "subscribers.export", "subscriber", None, f"{count} rows")

        def chunks() -> Any:
            with spool:
                while chunk := spool.read(64 * 1024):
                    yield chunk

        return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8",
                                 headers={"content-disposition": 'attachment; filename="subscribers.csv"', "cache-control": "no-store"})

    @router.get("/subscribers/import")
    def import_form(request: Request) -> HTMLResponse:
        console.session(request)
        return console.page(request, "import.html.j2", rows=None, text="", mode="plain", report=None)

    @router.post("/subscribers/import")
    async def import_post(request: Request) -> Response:
        actor, form = await console.form(request)
        upload = form.file("file")
        text = await upload.read() if upload is not None else (form.get("text") or "").encode()
        mode = form.get("mode") or "plain"
        mode = mode if mode in ("plain", "confirmed", "restore") else "plain"
        if not text.strip():
            return console.page(request, "import.html.j2", 422, rows=None, text="", mode=mode, report=None,
                                error="Choose a CSV file first.")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "upload.csv"
            path.write_bytes(text)
            dry_run = form.get("confirm") != "yes"
            try:
                # Blocking work off the event loop: other requests (the live run pages) go on meanwhile.
                report = await run_in_threadpool(_import, components, context, path, mode, dry_run)
                rows = await run_in_threadpool(_dry_run_rows, components, context, path) if dry_run else None
            except UsageError as e:
                return console.page(request, "import.html.j2", 422, rows=None, text="", mode=mode, report=None,
                                    error=str(e).replace(str(path), "the file"))
        if dry_run:
            return console.page(request, "import.html.j2", rows=rows, text=text.decode("utf-8", "replace"), mode=mode,
                                report=report, problems=[p.replace(str(path), "line") for p in report.problems])
        console.audit(actor, "subscribers.import", "subscriber", None, f"mode={mode} added={report.added}")
        return _to("/admin/subscribers", f"Imported: {report.added} added, {report.unchanged} already present, "
                                          f"{len(report.problems)} refused.")

    @router.get("/subscribers/{subscriber_id}")
    def subscriber_page(request: Request, subscriber_id: int) -> HTMLResponse:
        console.session(request)
        try:
            stored = store.details(subscriber_id)
        except UnknownSubscriberError:
            return console.page(request, "message.html.j2", 404, heading="No such subscriber",
                                text=f"There is no subscriber {subscriber_id} (erased, perhaps).")
        return _subscriber(console, request, stored)

    @router.post("/subscribers/{subscriber_id}")
    async def edit(request: Request, subscriber_id: int) -> Response:
        actor, form = await console.form(request)
        try:
            before = store.get(subscriber_id)
            after = store.set_preferences(
                subscriber_id, now=context.clock(), valid_categories=context.categories.slugs(),
                categories=form.getlist("categories"), frequency=form.get("frequency") or None,
                timezone=form.get("timezone") or None, send_hour=form.get("send_hour") or None,
                weekday=form.get("weekday") or None, name=form.get("name") if form.get("name") is not None else None,
            )
        except UnknownSubscriberError:
            return _to("/admin/subscribers", f"Subscriber {subscriber_id} no longer exists.")
        except InvalidSubscriberError as e:
            return _subscriber(console, request, store.details(subscriber_id), error=str(e), status=422)
        if after != before:
            console.audit(actor, "subscriber.edit", "subscriber", subscriber_id, _changes(before, after))
            return _to(f"/admin/subscribers/{subscriber_id}", "Saved.")
        return _to(f"/admin/subscribers/{subscriber_id}", "Nothing changed.")

    @router.post("/subscribers/{subscriber_id}/unsubscribe")
    async def unsubscribe(request: Request, subscriber_id: int) -> Response:
        actor, _ = await console.form(request)
        try:
            store.unsubscribe(subscriber_id, context.clock())
        except UnknownSubscriberError:
            return _to("/admin/subscribers", f"Subscriber {subscriber_id} no longer exists.")
        console.audit(actor, "subscriber.unsubscribe", "subscriber", subscriber_id)
        return _to(f"/admin/subscribers/{subscriber_id}", "Unsubscribed.")

    @router.post("/subscribers/{subscriber_id}/erase")
    async def erase(request: Request, subscriber_id: int) -> Response:
        actor, form = await console.form(request)
        if form.get("sure") != "yes":
            return _to(f"/admin/subscribers/{subscriber_id}", "Tick the box to confirm the erasure.")
        try:
            store.remove(subscriber_id)
        except UnknownSubscriberError:
            return _to("/admin/subscribers", f"Subscriber {subscriber_id} no longer exists.")
        console.audit(actor, "subscriber.erase", "subscriber", subscriber_id)  # the id only: nothing personal is kept
        return _to("/admin/subscribers", f"Subscriber {subscriber_id} and all their data erased.")


def _import(components: Components, context: WebContext, path: Path, mode: str, dry_run: bool) -> ImportReport:
    how = {"restore": restore_csv, "confirmed": import_confirmed_csv}.get(mode, import_csv)
    return how(components.store, path, valid_categories=context.categories.slugs(), now=context.clock(), dry_run=dry_run,
               addresses=components.addresses)


def _dry_run_rows(components: Components, context: WebContext, path: Path) -> list[tuple[str, str, str]]:
    """(line, address, what an import would do) for the first rows: the dry run as a table."""
    rows: list[tuple[str, str, str]] = []
    with path.open("rb") as stream:
        for item in read_subscribers(utf8_lines(stream), path, valid_categories=context.categories.slugs(),
                                     defaults=components.store.defaults, addresses=components.addresses):
            if len(rows) >= IMPORT_PREVIEW_ROWS:
                break
            if isinstance(item, Problem):
                rows.append((str(item.line), "", f"refused: {item.message}"))
            else:
                known = components.store.find_by_email(item.email)
                rows.append(("", item.email,
                             f"already present ({known.status.value}): left as it is" if known else "would be added"))
    return rows


def _changes(before: Subscriber, after: Subscriber) -> str:
    """The fields changed, by name only: the audit log outlives an erasure, so it keeps no personal value."""
    names = ("name", "categories", "frequency", "timezone", "send_hour", "weekday")
    return "changed " + ", ".join(n for n in names if getattr(before, n) != getattr(after, n))


def _subscriber(console: Console, request: Request, stored: StoredSubscriber, *, error: str = "", status: int = 200) -> HTMLResponse:
    components = console.components
    s = stored.subscriber
    return console.page(
        request, "subscriber.html.j2", status, stored=stored, s=s, error=error, notice=request.query_params.get("notice"),
        history=components.audit.of("subscriber", s.id), deliveries=components.delivery.outbox.deliveries_of(s.id),
        categories=console.context.categories.get(), frequencies=[f.value for f in Frequency], weekdays=WEEKDAYS,
    )



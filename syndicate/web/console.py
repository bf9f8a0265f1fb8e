"""The operators' console at /admin/: server-rendered pages (Jinja2, htmx for live parts), signed in with the admin token.

Every page but the sign-in form and the two static assets needs a session; every form posts its
session's CSRF token; every action is written to the audit log with who did it.
"""

from __future__ import annotations

import hmac
import logging
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from syndicate.campaigns import CampaignError, NewCampaign
from syndicate.delivery import SendRequest
from syndicate.digest import select_digest
from syndicate.errors import Problem, SyndicateError, UsageError
from syndicate.subscribers import (
    WEEKDAYS,
    Filter,
    Frequency,
    InvalidSubscriberError,
    PlaceholderLinks,
    StoredSubscriber,
    SubscriberStatus,
    UnknownSubscriberError,
    import_confirmed_csv,
    import_csv,
    read_subscribers,
    restore_csv,
    utf8_lines,
    write_subscribers,
)
from syndicate.web.admin_session import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, AdminSessions, csrf_for, csrf_matches
from syndicate.web.context import WebContext
from syndicate.web.operators_api import requeue_and_send, start_campaign
from syndicate.web.passwords import check_user
from syndicate.web.security import CSRF_COOKIE, csrf_field, csrf_ok, new_csrf_nonce, parse_nonce
from syndicate.wiring import Components

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "admin"
ASSETS = {
    "htmx.min.js": (Path(__file__).resolve().parent / "assets" / "htmx.min.js", "text/javascript; charset=utf-8"),
    "console.css": (TEMPLATES / "console.css", "text/css; charset=utf-8"),
}
CONSOLE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# A preview is an email's HTML: inline styles, remote images, no script; shown in a sandboxed frame of ours.
FRAME_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'self'; base-uri 'none'"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "testserver")
PAGE_SIZE = 50
IMPORT_PREVIEW_ROWS = 500


class NotSignedIn(Exception):
    """No valid session: a GET is sent to the sign-in page, anything else refused."""


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = lambda v: "-" if v is None else f"{v:%Y-%m-%d %H:%M} UTC"
    env.filters["urlquote"] = lambda v: quote(str(v), safe="")
    return env


class Console:
    """The console's pages for one app: rendering, sessions and CSRF checks."""

    def __init__(self, components: Components, context: WebContext, admin_token: str | None,
                 scheduler_status: Callable[[], dict[str, Any]] | None) -> None:
        self.components = components
        self.context = context
        self.admin_token = admin_token
        self.scheduler_status = scheduler_status
        self.sessions = AdminSessions(components.database, timedelta(minutes=components.settings.admin.session_minutes))
        self.env = _environment()
        self.users = components.settings.admin.users

    # -- sessions and forms

    def session(self, request: Request) -> tuple[str, str]:
        """(token, actor) of the signed-in session; NotSignedIn otherwise."""
        token = request.cookies.get(SESSION_COOKIE)
        actor = self.sessions.actor(token, self.context.clock())
        if token is None or actor is None:
            raise NotSignedIn
        return token, f"console:{actor}"  # who, as the audit log names them

    async def form(self, request: Request) -> tuple[str, Any]:
        """(actor, the posted form) once the session and its CSRF token are checked."""
        token, actor = self.session(request)
        form = await request.form()
        given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not csrf_matches(token, given if isinstance(given, str) else None):
            log.warning("console form refused: bad CSRF token path=%s", request.url.path)
            raise CsrfRefused
        return actor, form

    def page(self, request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        token = request.cookies.get(SESSION_COOKIE) or ""
        html = self.env.get_template(template).render({
            "site_title": self.components.settings.site.title, "csrf": csrf_for(token) if token else "",
            "path": request.url.path, **values,
        })
        return HTMLResponse(html, status_code=status, headers=_headers())

    def audit(self, actor: str, action: str, kind: str, subject_id: int | None, detail: str = "") -> None:
        self.components.audit.record(self.context.clock(), actor, action, kind, subject_id, detail)


class CsrfRefused(Exception):
    """A console form without its session's CSRF token."""


def _headers(policy: str = CONSOLE_POLICY) -> dict[str, str]:
    return {"cache-control": "no-store", "content-security-policy": policy}


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or (request.url.hostname or "") not in LOOPBACK


def _to(path: str, notice: str | None = None) -> RedirectResponse:
    return RedirectResponse(path + (f"?{urlencode({'notice': notice})}" if notice else ""), status_code=303)


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def console_router(components: Components, context: WebContext, *, admin_token: str | None,
                   scheduler_status: Callable[[], dict[str, Any]] | None) -> APIRouter:
    console = Console(components, context, admin_token, scheduler_status)
    router = APIRouter(prefix="/admin", include_in_schema=False)
    _public_routes(router, console)
    _dashboard_routes(router, console)
    _subscriber_routes(router, console)
    _send_routes(router, console)
    _failure_routes(router, console)
    _campaign_routes(router, console)
    return router


def install_console_handlers(app: Any) -> None:
    """What NotSignedIn and CsrfRefused become (called by the app factory)."""

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _: Exception) -> Response:
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/admin/login?{urlencode({'next': target})}", status_code=303, headers=_headers())
        return Response("Sign in first.", status_code=401, media_type="text/plain", headers=_headers())

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(_: Request, __: Exception) -> Response:
        return Response("This form has expired or did not come from the console: reload the page and try again.",
                        status_code=403, media_type="text/plain", headers=_headers())


# ---------------------------------------------------------------- sign-in and assets

def _public_routes(router: APIRouter, console: Console) -> None:
    context = console.context

    @router.get("/assets/{name}")
    def asset(name: str) -> Response:
        if name not in ASSETS:
            return Response(status_code=404)
        path, media = ASSETS[name]
        return Response(path.read_bytes(), media_type=media, headers={"cache-control": "max-age=3600"})

    def login_page(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
        nonce = parse_nonce(request.cookies.get(CSRF_COOKIE))
        fresh = nonce is None
        if nonce is None:
            nonce = new_csrf_nonce()
        response = console.page(request, "login.html.j2", status, error=error,
                                locked=console.admin_token is None and not console.users, users=bool(console.users),
                                login_csrf=csrf_field(context.signer, nonce, context.clock()),
                                next=_safe_next(request.query_params.get("next")), csrf="",
                                notice=request.query_params.get("notice"))
        if fresh:
            response.set_cookie(CSRF_COOKIE, str(nonce), httponly=True, samesite="strict", path="/", secure=_secure(request))
        return response

    @router.get("/login")
    def login_form(request: Request) -> HTMLResponse:
        return login_page(request)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        field = form.get("login_csrf")
        if not csrf_ok(context.signer, request.cookies.get(CSRF_COOKIE), field if isinstance(field, str) else None, context.clock()):
            return login_page(request, "This form has expired: please try again.", 403)
        given, name = str(form.get("token") or ""), str(form.get("name") or "").strip()[:60]
        if name:  # a configured user: name and password ([admin] users)
            who = await run_in_threadpool(check_user, console.users, name, given)
        elif console.admin_token is not None and hmac.compare_digest(given.strip().encode(), console.admin_token.encode()):
            who = "admin"
        else:
            who = None
        if who is None:
            log.warning("console sign-in refused: wrong %s", "name or password" if name else "token")
            return login_page(request, "Wrong name or password." if name else "That is not the admin token.", 401)
        token = console.sessions.create(who, context.clock())
        console.audit(f"console:{who}", "console.sign_in", "session", None)
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/admin",
                            secure=_secure(request), max_age=int(console.sessions.lifetime.total_seconds()))
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        actor, _ = await console.form(request)
        console.sessions.end(request.cookies.get(SESSION_COOKIE))
        console.audit(actor, "console.sign_out", "session", None)
        response = _to("/admin/login", "Signed out.")
        response.delete_cookie(SESSION_COOKIE, path="/admin")
        return response


def _safe_next(value: Any) -> str:
    """Only a console path: never an open redirect."""
    if isinstance(value, str) and value.startswith("/admin/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/admin/"


# ---------------------------------------------------------------- dashboard and runs

def _rate(run: Any, now: datetime) -> str:
    seconds = ((run.finished_at or now) - run.started_at).total_seconds()
    return f"{run.sent / seconds:.1f}" if seconds > 0 else "-"


def _dashboard_routes(router: APIRouter, console: Console) -> None:
    components, context = console.components, console.context

    def runs_values() -> dict[str, Any]:
        now = context.clock()
        runs = components.delivery.recent_runs(10)
        return {"runs": [(r, _rate(r, now)) for r in runs], "polling": any(r.status == "running" for r in runs)}

    @router.get("/")
    def dashboard(request: Request) -> HTMLResponse:
        console.session(request)
        store = components.store
        scheduler = console.scheduler_status() if console.scheduler_status else None
        return console.page(
            request, "dashboard.html.j2", **runs_values(),
            by_status=[(s.value, store.count(s)) for s in SubscriberStatus],
            by_category=store.counts_by_category(), next_due=store.next_due(10),
            scheduler=scheduler, notice=request.query_params.get("notice"),
        )

    @router.get("/runs/fragment")
    def runs_fragment(request: Request) -> HTMLResponse:
        console.session(request)
        return console.page(request, "_runs.html.j2", **runs_values())

    @router.get("/runs/{run_id}")
    def run_page(request: Request, run_id: int) -> HTMLResponse:
        console.session(request)
        try:
            run = components.delivery.report(run_id)
        except LookupError:
            return console.page(request, "message.html.j2", 404, heading="No such run", text=f"There is no run {run_id}.")
        return console.page(request, "run.html.j2", run=run, rate=_rate(run, context.clock()))

    @router.get("/runs/{run_id}/progress")
    def run_progress(request: Request, run_id: int) -> HTMLResponse:
        console.session(request)
        try:
            run = components.delivery.report(run_id)
        except LookupError:
            return HTMLResponse("", status_code=404)
        return console.page(request, "_run_progress.html.j2", run=run, rate=_rate(run, context.clock()))


# ---------------------------------------------------------------- subscribers

def _filter(params: Any) -> tuple[str, Filter, dict[str, str]]:
    status, category, frequency = params.get("status") or "", params.get("category") or "", params.get("frequency") or ""
    where = Filter(
        status=SubscriberStatus(status) if status in {s.value for s in SubscriberStatus} else None,
        category=category[:100] or None,
        frequency=Frequency(frequency) if frequency in {f.value for f in Frequency} else None,
    )
    q = (params.get("q") or "")[:200]
    return q, where, {"q": q, "status": status, "category": category, "frequency": frequency}


def _subscriber_routes(router: APIRouter, console: Console) -> None:
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
        upload = form.get("file")
        text = await upload.read() if upload is not None and hasattr(upload, "read") else (form.get("text") or "").encode()
        mode = form.get("mode") if form.get("mode") in ("plain", "confirmed", "restore") else "plain"
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


def _import(components: Components, context: WebContext, path: Path, mode: str, dry_run: bool) -> Any:
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


def _changes(before: Any, after: Any) -> str:
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


# ---------------------------------------------------------------- send

def _send_request(form: Any) -> SendRequest:
    frequency = form.get("frequency") or None
    return SendRequest(
        frequency=Frequency(frequency) if frequency in {f.value for f in Frequency} else None,
        categories=tuple(c for c in form.getlist("categories") if c)[:200],
        subscriber=(form.get("subscriber") or "").strip()[:320] or None,
    )


def _send_routes(router: APIRouter, console: Console) -> None:
    components, context = console.components, console.context

    def send_page(request: Request, status: int = 200, **values: Any) -> HTMLResponse:
        defaults: dict[str, Any] = {"chosen": {"frequency": "", "categories": [], "subscriber": ""}, "plan": None, "held": [],
                    "error": "", "frame_query": ""}
        return console.page(request, "send.html.j2", status, categories=context.categories.get(),
                            frequencies=[f.value for f in Frequency], **{**defaults, **values})

    @router.get("/send")
    def send_form(request: Request) -> HTMLResponse:
        console.session(request)
        return send_page(request)

    @router.post("/send/check")
    async def check(request: Request) -> HTMLResponse:
        _, form = await console.form(request)
        send_request = _send_request(form)
        chosen = {"frequency": form.get("frequency") or "", "categories": list(send_request.categories),
                  "subscriber": send_request.subscriber or ""}
        try:
            due = await run_in_threadpool(lambda: list(components.delivery.due(send_request, context.clock())))
        except (UsageError, UnknownSubscriberError) as e:
            return send_page(request, 422, chosen=chosen, error=str(e))
        plan = [(email, count) for email, count, held in due if held is None]
        held = [(email, why) for email, _, why in due if why is not None]
        first = send_request.subscriber or (plan[0][0] if plan else "")
        return send_page(request, chosen=chosen, plan=plan, held=held,
                         frame_query=urlencode({"subscriber": first}) if first else "")

    @router.get("/send/frame")
    def frame(request: Request) -> Response:
        console.session(request)
        email = request.query_params.get("subscriber") or ""
        html = _digest_preview(components, context, email)
        return HTMLResponse(html, headers={**_headers(FRAME_POLICY), "x-frame-options": "SAMEORIGIN"})

    @router.post("/send")
    async def send(request: Request) -> Response:
        actor, form = await console.form(request)
        if form.get("confirm") != "yes":
            return send_page(request, 422, error="Confirm the send first.")
        send_request = _send_request(form)
        try:
            report = await run_in_threadpool(components.delivery.plan_manual, send_request, context.clock())
        except (UsageError, UnknownSubscriberError) as e:
            return send_page(request, 422, error=str(e))
        delivery, runner = components.delivery, context.runner
        runner.start(f"console-run-{report.run_id}", lambda: delivery.work(report.run_id, stop=runner.stop))
        console.audit(actor, "send.manual", "run", report.run_id, f"{report.total} digests")
        return _to(f"/admin/runs/{report.run_id}")


def _digest_preview(components: Components, context: WebContext, email: str) -> str:
    """The digest `email` would get now, with placeholder links (safe to show and share)."""
    try:
        subscriber = components.store.get_by_email(email)
    except (UnknownSubscriberError, InvalidSubscriberError):
        return "<p>No such subscriber.</p>"
    corpus = components.corpus()
    digest = select_digest(subscriber, corpus.articles, corpus.categories, context.clock(),
                           components.settings.digest.max_articles)
    if digest is None:
        return "<p>Nothing new for this subscriber: no digest would be sent.</p>"
    return components.renderer.render_digest(digest, PlaceholderLinks(components.urls), corpus.categories).html


# ---------------------------------------------------------------- failures

def _failure_routes(router: APIRouter, console: Console) -> None:
    components, context = console.components, console.context

    @router.get("/failures")
    def failures(request: Request) -> HTMLResponse:
        console.session(request)
        return console.page(request, "failures.html.j2", groups=components.delivery.failure_groups(50),
                            failures=components.delivery.failures(100), notice=request.query_params.get("notice"))

    @router.post("/failures/requeue")
    async def requeue(request: Request) -> Response:
        actor, form = await console.form(request)
        ids = [i for i in (_int(v) for v in form.getlist("id")) if i]
        run_id = _int(form.get("run_id"))
        reply = form.get("reply") if isinstance(form.get("reply"), str) and "reply" in form else None
        if not ids and run_id is None and reply is None:
            return _to("/admin/failures", "Nothing chosen to requeue.")
        try:
            reason = str(form.get("reason") or "")[:500]
            result = await run_in_threadpool(lambda: requeue_and_send(
                components, context.runner, context.clock(), actor, ids=ids, run_id=run_id, reply=reply, reason=reason,
                send=True))
        except UsageError as e:
            return _to("/admin/failures", str(e))
        left = f"; {len(result['left_failed'])} left failed ({result['left_failed'][0]['why']})" if result["left_failed"] else ""
        return _to("/admin/failures", f"Requeued {len(result['requeued'])} and sending{left}.")


# ---------------------------------------------------------------- campaigns

def _campaign_routes(router: APIRouter, console: Console) -> None:
    components, context = console.components, console.context
    campaigns = components.campaigns

    def list_page(request: Request, status: int = 200, **values: Any) -> HTMLResponse:
        defaults = {"error": "", "values": {"subject": "", "body": "", "categories": [], "send_at": "", "variant": "letter"}}
        return console.page(request, "campaigns.html.j2", status, campaigns=campaigns.recent(50),
                            categories=context.categories.get(), notice=request.query_params.get("notice"),
                            **{**defaults, **values})

    @router.get("/campaigns")
    def campaign_list(request: Request) -> HTMLResponse:
        console.session(request)
        return list_page(request)

    @router.post("/campaigns")
    async def create(request: Request) -> Response:
        actor, form = await console.form(request)
        values = {"subject": form.get("subject") or "", "body": form.get("body") or "",
                  "categories": form.getlist("categories"), "send_at": form.get("send_at") or "",
                  "variant": form.get("variant") or "letter"}
        try:
            send_at = _local_time(values["send_at"], components.settings.site.timezone)
            new = NewCampaign.checked(values["subject"], values["body"], values["categories"], context.categories.slugs(),
                                      str(values["variant"]))
            campaign = campaigns.create(new, now=context.clock(), actor=actor, send_at=send_at)
        except CampaignError as e:
            return list_page(request, 422, error=str(e), values=values)
        console.audit(actor, "campaign.create", "campaign", campaign.id, campaign.subject)
        return _to(f"/admin/campaigns/{campaign.id}", "Created: send a test copy first.")

    def campaign_page(request: Request, campaign_id: int, status: int = 200, **values: Any) -> HTMLResponse:
        try:
            campaign = campaigns.get(campaign_id, counts=True)
        except CampaignError:
            return console.page(request, "message.html.j2", 404, heading="No such campaign", text=f"There is no campaign {campaign_id}.")
        return console.page(request, "campaign.html.j2", status, campaign=campaign, audience=campaigns.audience_count(campaign),
                            notice=request.query_params.get("notice"), **{"error": "", **values})

    @router.get("/campaigns/{campaign_id}")
    def show(request: Request, campaign_id: int) -> HTMLResponse:
        console.session(request)
        return campaign_page(request, campaign_id)

    @router.get("/campaigns/{campaign_id}/frame")
    def frame(request: Request, campaign_id: int) -> Response:
        console.session(request)
        try:
            html = campaigns.preview(campaign_id).html
        except CampaignError:
            return Response(status_code=404)
        return HTMLResponse(html, headers={**_headers(FRAME_POLICY), "x-frame-options": "SAMEORIGIN"})

    @router.post("/campaigns/{campaign_id}/test")
    async def test(request: Request, campaign_id: int) -> Response:
        actor, form = await console.form(request)
        to = (form.get("to") or "").strip()[:320]
        try:
            result = await run_in_threadpool(lambda: campaigns.send_test(campaign_id, to, now=context.clock()))
        except (UsageError, SyndicateError) as e:
            return campaign_page(request, campaign_id, 422, error=str(e))
        console.audit(actor, "campaign.test", "campaign", campaign_id, result.outcome)
        return _to(f"/admin/campaigns/{campaign_id}", f"Test copy to {to}: {result.outcome} ({result.code or ''} {result.reply}).")

    @router.post("/campaigns/{campaign_id}/send")
    async def send(request: Request, campaign_id: int) -> Response:
        actor, form = await console.form(request)
        if form.get("confirm") != "yes":
            return campaign_page(request, campaign_id, 422, error="Tick the box to confirm the send.")
        try:
            run_id = await run_in_threadpool(start_campaign, components, context.runner, campaign_id, context.clock(), actor)
        except CampaignError as e:
            return campaign_page(request, campaign_id, 409, error=str(e))
        return _to(f"/admin/runs/{run_id}")


def _local_time(text: str, timezone: str) -> datetime | None:
    """A datetime-local field (no offset) read in the site's timezone."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CampaignError(f"send_at: {text!r} is not a date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone))


__all__ = ["console_router", "install_console_handlers"]

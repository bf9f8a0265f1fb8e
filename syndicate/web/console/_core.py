"""The console's machinery: rendering, sessions and their CSRF token, what a refusal becomes."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from syndicate.web.admin_session import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, AdminSessions, csrf_for, csrf_matches
from syndicate.web.context import WebContext
from syndicate.web.passwords import check_user
from syndicate.web.security import CSRF_COOKIE, csrf_check, csrf_field, new_csrf_nonce, parse_nonce
from syndicate.wiring import Components

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates" / "admin"
ASSETS = {
    "htmx.min.js": (Path(__file__).resolve().parent.parent / "assets" / "htmx.min.js", "text/javascript; charset=utf-8"),
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
LOGIN_FORM = "/admin/login"
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

    async def form(self, request: Request) -> tuple[str, PostedForm]:
        """(actor, the posted form) once the session and its CSRF token are checked."""
        token, actor = self.session(request)
        form = PostedForm(await request.form())
        given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not csrf_matches(token, given):
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


class PostedForm:
    """A console form as posted. multipart/form-data lets a client send any field as a file: where
    a form expects text, a file reads as absent (the form then says what is missing), and a file
    is taken only where one is expected."""

    def __init__(self, form: FormData) -> None:
        self._form = form

    def get(self, name: str) -> str | None:
        value = self._form.get(name)
        return value if isinstance(value, str) else None

    def getlist(self, name: str) -> list[str]:
        return [value for value in self._form.getlist(name) if isinstance(value, str)]

    def file(self, name: str) -> UploadFile | None:
        value = self._form.get(name)
        return value if isinstance(value, UploadFile) else None


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


def install_console_handlers(app: FastAPI) -> None:
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

def public_routes(router: APIRouter, console: Console) -> None:
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
                                login_csrf=csrf_field(context.signer, nonce, LOGIN_FORM, context.clock()),
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
        if csrf_check(context.signer, request.cookies.get(CSRF_COOKIE), field if isinstance(field, str) else None, LOGIN_FORM,
                      context.clock()) is None:
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



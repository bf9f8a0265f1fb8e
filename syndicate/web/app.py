"""The FastAPI app: the built site, the subscriber pages, the admin API and /healthz, in one process."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from syndicate import __version__
from syndicate.config import MIN_SECRET_BYTES, read_secret
from syndicate.content import CorpusMemory
from syndicate.delivery import DeliveryService
from syndicate.metrics import Metrics
from syndicate.storage import Database, DatabaseUnavailableError
from syndicate.web.api import ApiProblem, Unauthorized, api_router
from syndicate.web.console import console_router, install_console_handlers
from syndicate.web.context import CategoryList, Runner, WebContext
from syndicate.web.deliverability import suppressions_router
from syndicate.web.metrics import metrics_router
from syndicate.web.operators_api import operators_router
from syndicate.web.pages import Pages, page_router
from syndicate.web.security import SITE_HEADERS, BodyLimit, SecurityHeaders, loggable_path
from syndicate.web.static import StaticFirst, StaticSite
from syndicate.web.webhooks import webhooks_router
from syndicate.wiring import Components, utc_now

log = logging.getLogger(__name__)

# Paths the app answers itself; every other GET or HEAD is a file of the built site.
APP_PREFIXES = ("/api", "/subscribe", "/confirm/", "/preferences/", "/unsubscribe/", "/assets/", "/healthz", "/webhooks/",
                "/metrics", "/admin/")


def create_app(
    components: Components,
    *,
    delivery: DeliveryService | None = None,
    scheduler_status: Callable[[], dict[str, Any]] | None = None,
    clock: Callable[[], datetime] = utc_now,
    corpus_memory: CorpusMemory | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """The whole HTTP service over `components` (the composition root's collaborators: database,
    store, signer, confirmations); `delivery` serves /api/sends (None: it answers 503);
    `scheduler_status` returns a JSON-ready dict for /api/status and /healthz (jobs with next run
    times, the lease); /healthz answers 503 when it says `running: false` (its lease heartbeat stopped).
    `corpus_memory` is the service's CorpusMemory (its builds and category lists then share the
    articles in memory). MissingSecretError if the link-signing secret is not set."""
    settings = components.settings
    env = dict(components.environ)
    db = components.database
    memory = CorpusMemory() if corpus_memory is None else corpus_memory
    context = WebContext(
        settings=settings,
        store=components.store,
        signer=components.signer,
        urls=components.urls,
        confirmations=components.confirmations,
        notices=components.notices,
        content=components.content,
        build=components.build_settings,
        categories=CategoryList(components.content, {slug: rule.title for slug, rule in settings.categories.items()}, memory),
        clock=clock,
        environ=env,
        signup_limits=components.signup_limits,
        runner=Runner(),
        corpus_memory=memory,
        addresses=components.addresses,
    )
    admin_token = env.get(settings.http.admin_token_env, "").strip() or None
    if admin_token is not None:  # set: it must be long enough to resist guessing
        read_secret(settings.http.admin_token_env, "the admin API token", env, min_bytes=MIN_SECRET_BYTES)
    if admin_token is None:
        log.warning("admin API locked: environment variable %s is not set", settings.http.admin_token_env)
    runner = context.runner

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runner.shutdown()  # the components (the database) belong to whoever made them

    app = FastAPI(title=f"{settings.site.title} admin API", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.context = context
    app.state.runner = runner
    pages = Pages(context)
    _handlers(app, pages)
    install_console_handlers(app)
    app.include_router(page_router(pages))
    app.include_router(api_router(context, delivery=delivery, runner=runner, admin_token=admin_token,
                                  scheduler_status=scheduler_status))
    # deliverability (#13): the suppression list and the providers' bounce webhooks
    app.include_router(suppressions_router(db, admin_token=admin_token, clock=clock, max_import_bytes=settings.http.max_body_bytes))
    app.include_router(webhooks_router(components.bounces, settings.bounces.webhooks, env, clock))
    _health(app, db, scheduler_status)
    if metrics is not None:  # /metrics (issue 14)
        app.include_router(metrics_router(metrics, admin_token))
    # -- operators (issue 17): requeue and campaigns in the API, the console under /admin/
    app.include_router(operators_router(components, context, admin_token=admin_token))
    app.include_router(console_router(components, context, admin_token=admin_token, scheduler_status=scheduler_status))
    site = StaticSite(settings.output.folder, feeds_folder=settings.feeds.folder, extra_headers=SITE_HEADERS)
    app.mount("/", site)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=settings.http.max_body_bytes)
    # Outermost: the built files are answered before any framework routing (they carry their own headers).
    app.add_middleware(StaticFirst, site=site, app_prefixes=APP_PREFIXES)
    return app


RETRY_AFTER = "30"  # seconds: a restarted database or a finished lock is usually that quick


def _handlers(app: FastAPI, pages: Pages) -> None:
    @app.exception_handler(DatabaseUnavailableError)
    async def unavailable(request: Request, error: Exception) -> Response:
        """The database is down or locked: 503 with a retry hint, never a bare 500 (nothing was written)."""
        log.error("database unavailable path=%s: %s", loggable_path(request.url.path), error)
        headers = {"retry-after": RETRY_AFTER}
        if request.url.path.startswith("/api"):
            return JSONResponse({"error": "the database is unavailable; try again shortly"}, status_code=503,
                                headers=headers)
        response = pages.message(request, "Please try again in a minute",
                                 "We cannot save anything right now. Nothing was lost: send the form again shortly.",
                                 status=503)
        response.headers.update(headers)
        return response

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, __: Exception) -> Response:
        return Response(status_code=401, headers={"www-authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: Exception) -> Response:
        """FastAPI's 422, written in ASCII: the input it echoes may hold a lone surrogate (a JSON escape),
        which UTF-8 cannot carry (FastAPI's own answer would then fail with a 500)."""
        assert isinstance(error, RequestValidationError)
        return Response(json.dumps({"detail": jsonable_encoder(error.errors())}), status_code=422, media_type="application/json")

    @app.exception_handler(ApiProblem)
    async def problem(_: Request, error: Exception) -> Response:
        assert isinstance(error, ApiProblem)
        body: dict[str, Any] = {"error": error.message}
        if error.field:
            body["field"] = error.field
        return JSONResponse(body, status_code=error.status)


def _health(app: FastAPI, db: Database, scheduler_status: Callable[[], dict[str, Any]] | None) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        result: dict[str, Any] = {}
        healthy = True
        try:
            with db.read() as connection:
                connection.execute(text("SELECT 1"))
            result["database"] = "ok"
        except Exception as e:  # any failure to reach the database is what this endpoint reports
            result["database"] = f"error: {type(e).__name__}"
            healthy = False
        if scheduler_status is not None:
            state = scheduler_status()
            result["scheduler"] = state
            # `running` stays true while this process runs the scheduler or stands by for the lease.
            healthy = healthy and bool(state.get("running", True))
        return JSONResponse(result, status_code=200 if healthy else 503)

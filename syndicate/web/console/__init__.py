"""The operators' console at /admin/: server-rendered pages (Jinja2, htmx for live parts), signed in with the admin token.

Every page but the sign-in form and the two static assets needs a session; every form posts its
session's CSRF token; every action is written to the audit log with who did it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from syndicate.web.console._core import Console, install_console_handlers, public_routes
from syndicate.web.console._sending import campaign_routes, dashboard_routes, failure_routes, send_routes
from syndicate.web.console._subscribers import subscriber_routes
from syndicate.web.context import WebContext
from syndicate.wiring import Components


def console_router(components: Components, context: WebContext, *, admin_token: str | None,
                   scheduler_status: Callable[[], dict[str, Any]] | None) -> APIRouter:
    console = Console(components, context, admin_token, scheduler_status)
    router = APIRouter(prefix="/admin", include_in_schema=False)
    public_routes(router, console)
    dashboard_routes(router, console)
    subscriber_routes(router, console)
    send_routes(router, console)
    failure_routes(router, console)
    campaign_routes(router, console)
    return router


__all__ = ["console_router", "install_console_handlers"]

"""GET /metrics: this service's Prometheus metrics (syndicate.metrics), behind the admin token like the API."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from syndicate.metrics import CONTENT_TYPE, Metrics
from syndicate.web.api import token_check


def metrics_router(metrics: Metrics, admin_token: str | None) -> APIRouter:
    """Scrape with `authorization: Bearer <admin token>` (Prometheus: `authorization.credentials`)."""
    router = APIRouter(dependencies=[Depends(token_check(admin_token))], tags=["metrics"])

    @router.get("/metrics", include_in_schema=False)
    def scrape() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return router

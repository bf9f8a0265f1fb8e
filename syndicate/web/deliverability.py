"""The admin API's suppression list (/api/suppressions), behind the same bearer token as the rest of /api."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import Field

from syndicate.errors import UsageError
from syndicate.storage import Database
from syndicate.subscribers import SuppressionList
from syndicate.web.api import ApiProblem, Model, token_check


class SuppressionBody(Model):
    entries: list[str] = Field(min_length=1, max_length=10_000, description="addresses (user@host) or domains (@host)")
    reason: str = Field("added through the API", max_length=500)


def suppressions_router(database: Database, *, admin_token: str | None, clock: Callable[[], datetime],
                        max_import_bytes: int) -> APIRouter:
    router = APIRouter(prefix="/api/suppressions", dependencies=[Depends(token_check(admin_token))], tags=["admin"])
    listing = SuppressionList(database)

    @router.get("")
    def list_suppressions(kind: str | None = Query(None, pattern="^(address|domain)$"), after: int = Query(0, ge=0),
                          limit: int = Query(100, ge=1, le=1000)) -> Any:
        rows = listing.list(kind=kind, after=after, limit=limit)
        return {
            "items": [{"id": r.id, "kind": r.kind, "value": r.value, "reason": r.reason, "source": r.source,
                       "event_id": r.event_id, "created_at": r.created_at.isoformat()} for r in rows],
            "next_after": rows[-1].id if len(rows) == limit else None,
        }

    @router.post("", status_code=201)
    def add(body: SuppressionBody) -> Any:
        added, problems = [], []
        for entry in body.entries:
            try:
                if listing.add(entry, reason=body.reason, source="api", now=clock()):
                    added.append(entry.strip())
            except UsageError as e:
                problems.append(str(e))
        if problems and not added:
            raise ApiProblem(422, "; ".join(problems[:20]), "entries")
        return {"added": added, "problems": problems}

    @router.delete("/{entry}", status_code=204, response_class=Response)
    def remove(entry: str) -> Response:
        try:
            removed = listing.remove(entry)
        except UsageError as e:
            raise ApiProblem(422, str(e), "entry") from e
        if not removed:
            raise ApiProblem(404, f"{entry} is not suppressed")
        return Response(status_code=204)

    @router.post("/import")
    async def import_list(request: Request) -> Any:
        """One entry per line (text/plain or text/csv), as `syndicate suppressions import`."""
        body = await request.body()
        if len(body) > max_import_bytes:
            raise ApiProblem(413, f"import larger than {max_import_bytes} bytes")
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ApiProblem(422, f"not UTF-8 text (byte {e.start})") from e
        added, problems = listing.import_entries(text.splitlines(), reason="imported through the API", source="import", now=clock())
        return {"added": added, "problems": problems[:100]}

    @router.get("/export")
    def export() -> Response:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["value", "kind", "source", "created_at", "reason"])
        for row in listing.iter_all():
            writer.writerow([row.value if row.kind == "address" else "@" + row.value, row.kind, row.source,
                             row.created_at.isoformat(), row.reason])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8")

    return router

"""The admin API under /api: manual sends, run progress, status, rebuilds and subscribers (JSON, bearer token)."""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from syndicate.bounces import BounceEvents, deliverability
from syndicate.content import unsafe_character
from syndicate.delivery import DeliveryService, SendRequest
from syndicate.errors import SyndicateError, UsageError
from syndicate.site import build_site
from syndicate.subscribers import (
    WEEKDAYS,
    Filter,
    Frequency,
    InvalidSubscriberError,
    StoredSubscriber,
    SubscriberExistsError,
    SubscriberStatus,
    UnknownSubscriberError,
    new_subscriber,
)
from syndicate.web.context import Runner, WebContext

log = logging.getLogger(__name__)

SubscriberId = Annotated[int, Path(ge=1, le=2**31 - 1)]
RunId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Slug = Annotated[str, Field(min_length=1, max_length=100)]
Hour = Annotated[int, Field(ge=0, le=23)]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class Unauthorized(Exception):
    """Missing or wrong admin token: answered 401 with no body."""


class ApiProblem(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class Model(BaseModel):
    """An API body: unknown fields refused, and no text holding what no database or email can carry
    (a NUL, a lone surrogate from a JSON escape): 422 naming the field, never a 500 at the database."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        for text in value if isinstance(value, list) else (value,):
            if isinstance(text, str) and (bad := unsafe_character(text)):
                raise ValueError(f"contains a character no database or email can carry ({bad})")
        return value


class SendBody(Model):
    frequency: Frequency | None = None
    categories: list[Slug] = Field(default_factory=list, max_length=200)
    subscriber: str | None = Field(None, max_length=320, description="one subscriber, by email")
    dry_run: bool = False
    test_to: str | None = Field(None, max_length=320, description="mail one test copy here and change no state")


class SubscriberBody(Model):
    email: str = Field(max_length=320)
    name: str | None = Field(None, max_length=400)
    categories: list[Slug] = Field(default_factory=list, max_length=200, description="none: every category")
    frequency: Frequency | None = None
    timezone: str | None = Field(None, max_length=64)
    send_hour: Hour | None = None
    weekday: Weekday | None = None
    confirmed: bool = Field(False, description="active at once; otherwise pending, and a confirmation email is sent")


class PreferencesBody(Model):
    name: str | None = Field(None, max_length=400)
    categories: list[Slug] | None = Field(None, max_length=200)
    frequency: Frequency | None = None
    timezone: str | None = Field(None, max_length=64)
    send_hour: Hour | None = None
    weekday: Weekday | None = None


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str | None
    status: SubscriberStatus
    categories: list[str]
    frequency: Frequency
    timezone: str
    send_hour: int
    weekday: Weekday
    source: str
    created_at: datetime | None
    next_send_at: datetime | None
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


class SubscriberPage(BaseModel):
    subscribers: list[SubscriberOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last one")


class Accepted(BaseModel):
    run_id: int
    status_url: str


def _out(stored: StoredSubscriber) -> SubscriberOut:
    s = stored.subscriber
    return SubscriberOut(
        id=s.id, email=s.email, name=s.name, status=s.status, categories=list(s.categories), frequency=s.frequency,
        timezone=s.timezone, send_hour=s.send_hour, weekday=cast(Weekday, WEEKDAYS[s.weekday]), source=s.source,
        created_at=s.created_at, next_send_at=stored.next_send_at, confirmed_at=stored.confirmed_at,
        unsubscribed_at=stored.unsubscribed_at,
    )



def token_check(expected: str | None) -> Callable[[Request], None]:
    """A dependency accepting only `Authorization: Bearer <expected>`, compared in constant time."""

    def check(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if expected is None or scheme.lower() != "bearer":
            raise Unauthorized
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise Unauthorized

    return check


def api_router(context: WebContext, *, delivery: DeliveryService | None, runner: Runner, admin_token: str | None,
               scheduler_status: Callable[[], dict[str, Any]] | None) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(token_check(admin_token))], tags=["admin"])
    store = context.store
    build_lock = threading.Lock()
    signup_limits = context.signup_limits

    def need_delivery() -> DeliveryService:
        if delivery is None:
            raise ApiProblem(503, "sending is not available: no delivery service in this process")
        return delivery

    @router.post("/sends", status_code=202, response_model=None, responses={
        202: {"model": Accepted}, 200: {"description": "dry run (recipients) or test copy (result)"}})
    def start_send(body: SendBody) -> Any:
        service = need_delivery()
        try:
            return send(service, _send_request(body), body, context.clock())
        except UnknownSubscriberError as e:
            raise ApiProblem(404, str(e), "subscriber") from e
        except (UsageError, ValueError) as e:  # an unknown category, an inactive subscriber, nothing new to test
            raise ApiProblem(422, str(e)) from e

    def send(service: DeliveryService, request: SendRequest, body: SendBody, now: datetime) -> JSONResponse:
        if body.dry_run:  # the send's own rule (issue 17): who it would record, and who not with why
            due = list(service.due(request, now))
            return JSONResponse({"dry_run": True,
                                 "recipients": [{"email": e, "articles": n} for e, n, held in due if held is None],
                                 "not_sent": [{"email": e, "why": held} for e, _, held in due if held is not None]})
        if body.test_to:
            return JSONResponse({"test_to": body.test_to, "result": jsonable_encoder(service.send_test_copy(request, body.test_to, now))})
        report = service.plan_manual(request, now)
        if context.settings.delivery.mode == "inline":  # "workers": the syndicate worker processes send it
            runner.start(f"send-run-{report.run_id}", lambda: service.work(report.run_id, stop=runner.stop))
        log.info("manual send accepted run=%s total=%s mode=%s", report.run_id, report.total, context.settings.delivery.mode)
        return JSONResponse({"run_id": report.run_id, "status_url": f"/api/sends/{report.run_id}"}, status_code=202)

    @router.get("/sends/{run_id}")
    def send_progress(run_id: RunId) -> Any:
        try:
            return jsonable_encoder(need_delivery().report(run_id))
        except (LookupError, SyndicateError) as e:
            raise ApiProblem(404, f"no send run {run_id}") from e

    @router.get("/status")
    def status() -> Any:
        result: dict[str, Any] = {"scheduler": scheduler_status() if scheduler_status else None}
        if delivery is not None:
            result["recent_runs"] = jsonable_encoder(delivery.recent_runs(20))
            result["outbox"] = {"retrying": len(delivery.waiting_retries()), "recent_failures": len(delivery.failures(50))}
        else:
            result["recent_runs"], result["outbox"] = [], None
        result["subscribers"] = {s.value: store.count(s) for s in SubscriberStatus}
        refused = signup_limits.refusals(context.clock())
        result["signups_refused"] = {"last_24_hours": sum(refused.values()), "by_reason": dict(refused)}
        bounces = context.settings.bounces  # deliverability (#13)
        result["deliverability"] = deliverability(BounceEvents(store.database), context.clock(),
                                                  bounce_warning=bounces.bounce_rate_warning,
                                                  complaint_warning=bounces.complaint_rate_warning)
        result["sources"] = _source_statuses(context)
        return result

    @router.post("/build")
    def build() -> Any:
        if not build_lock.acquire(blocking=False):
            raise ApiProblem(409, "a build is already running")
        try:
            report = build_site(context.build, context.content, memory=context.corpus_memory)
        finally:
            build_lock.release()
        return {"ok": report.ok, "articles": report.articles, "categories": report.categories,
                "written": len(report.written), "unchanged": report.unchanged, "removed": len(report.removed),
                "problems": [str(p) for p in report.problems]}

    _subscriber_routes(router, context)
    return router


def _source_statuses(context: WebContext) -> list[dict[str, Any]]:
    """Each external source's last fetch, status, items and next fetch (syndicate.sources)."""
    if not context.settings.sources:
        return []
    from syndicate.wiring import make_sources  # the composition root; imported when sources are configured

    return [s.as_json() for s in make_sources(context.settings, context.store.database).statuses()]


def _send_request(body: SendBody) -> SendRequest:
    return SendRequest(frequency=body.frequency, categories=tuple(body.categories), subscriber=body.subscriber,
                       dry_run=body.dry_run, test_to=body.test_to)


def _subscriber_routes(router: APIRouter, context: WebContext) -> None:
    store = context.store

    def found(subscriber_id: int) -> SubscriberOut:
        try:
            return _out(store.details(subscriber_id))
        except UnknownSubscriberError as e:
            raise ApiProblem(404, str(e)) from e

    @router.get("/subscribers", response_model=SubscriberPage)
    def list_subscribers(
        status: SubscriberStatus | None = None,
        category: Annotated[str | None, Query(max_length=100)] = None,
        frequency: Frequency | None = None,
        after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> SubscriberPage:
        where = Filter(status=status, category=category, frequency=frequency)
        rows: list[SubscriberOut] = []
        for stored in store.iter_subscribers(where, batch=limit + 1):
            if stored.subscriber.id <= after:
                continue
            rows.append(_out(stored))
            if len(rows) > limit:
                break
        more = len(rows) > limit
        rows = rows[:limit]
        return SubscriberPage(subscribers=rows, next_after=rows[-1].id if more and rows else None)

    @router.get("/subscribers/{subscriber_id}", response_model=SubscriberOut)
    def get_subscriber(subscriber_id: SubscriberId) -> SubscriberOut:
        return found(subscriber_id)

    @router.post("/subscribers", status_code=201, response_model=SubscriberOut)
    def add_subscriber(body: SubscriberBody) -> SubscriberOut:
        now = context.clock()
        try:
            new = new_subscriber(
                body.email, name=body.name, categories=body.categories, valid_categories=context.categories.slugs(),
                defaults=store.defaults, frequency=body.frequency, timezone=body.timezone, send_hour=body.send_hour,
                weekday=body.weekday, addresses=context.addresses,
            )
            subscriber = store.add(new, now=now, confirmed=body.confirmed, source="api")
        except InvalidSubscriberError as e:
            raise ApiProblem(422, e.reason, e.field) from e
        except SubscriberExistsError as e:
            raise ApiProblem(409, str(e)) from e
        if not body.confirmed:
            context.confirmations.send(subscriber, now=now, categories=context.categories.named(subscriber.categories))
        return found(subscriber.id)

    @router.patch("/subscribers/{subscriber_id}", response_model=SubscriberOut)
    def update_subscriber(subscriber_id: SubscriberId, body: PreferencesBody) -> SubscriberOut:
        found(subscriber_id)
        try:
            store.set_preferences(
                subscriber_id, now=context.clock(), valid_categories=context.categories.slugs(),
                categories=body.categories, frequency=body.frequency, timezone=body.timezone,
                send_hour=body.send_hour, weekday=body.weekday, name=body.name,
            )
        except InvalidSubscriberError as e:
            raise ApiProblem(422, e.reason, e.field) from e
        except UnknownSubscriberError as e:
            raise ApiProblem(404, str(e)) from e
        return found(subscriber_id)

    @router.post("/subscribers/{subscriber_id}/unsubscribe", response_model=SubscriberOut)
    def unsubscribe_subscriber(subscriber_id: SubscriberId) -> SubscriberOut:
        try:
            store.unsubscribe(subscriber_id, context.clock())
        except UnknownSubscriberError as e:
            raise ApiProblem(404, str(e)) from e
        return found(subscriber_id)

    @router.delete("/subscribers/{subscriber_id}", status_code=204, response_class=Response)
    def remove_subscriber(subscriber_id: SubscriberId) -> Response:
        try:
            store.remove(subscriber_id)
        except UnknownSubscriberError as e:
            raise ApiProblem(404, str(e)) from e
        return Response(status_code=204)


__all__ = ["ApiProblem", "Unauthorized", "api_router"]

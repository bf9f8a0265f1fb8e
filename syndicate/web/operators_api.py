"""The admin API for operators (issue 17): requeueing failed deliveries, failures by reply, and campaigns."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import Field

from syndicate.campaigns import Campaign, CampaignError, NewCampaign
from syndicate.errors import UsageError
from syndicate.web.api import ApiProblem, Model, token_check
from syndicate.web.context import Runner, WebContext
from syndicate.wiring import Components

if TYPE_CHECKING:
    from syndicate.delivery import DeliveryService

log = logging.getLogger(__name__)

CampaignId = Annotated[int, Path(ge=1, le=2**31 - 1)]
API_ACTOR = "api"


class RequeueBody(Model):
    ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(default_factory=list, max_length=10_000)
    run_id: int | None = Field(None, ge=1, le=2**31 - 1)
    reply: str | None = Field(None, max_length=2000, description="every failed delivery whose last reply is exactly this")
    reason: str | None = Field(None, max_length=500)
    send: bool = Field(True, description="work the runs touched at once (in the background)")


class CampaignBody(Model):
    subject: str = Field(max_length=200)
    body: str = Field(max_length=200_000, description="Markdown")
    categories: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=200)
    send_at: datetime | None = Field(None, description="schedule; null: a draft")
    variant: Literal["letter", "announcement"] = "letter"


class TestBody(Model):
    to: str = Field(max_length=320)


class SendCampaignBody(Model):
    send_at: datetime | None = Field(None, description="schedule for this time instead of sending now")


def requeue_and_send(components: Components, runner: Runner, now: datetime, actor: str, *, ids: list[int],
                     run_id: int | None, reply: str | None, reason: str | None, send: bool) -> dict[str, Any]:
    """Requeue, log who did it, and (send) work the runs touched in the background. Shared by the API and the console."""
    delivery = components.delivery
    result = delivery.requeue(now, delivery_ids=ids, run_id=run_id, reply=reply)
    components.audit.record_many(now, actor, "delivery.requeue", "delivery", result.delivery_ids, reason or "")
    if send:
        for touched in result.run_ids:
            runner.start(f"requeued-run-{touched}", _worker(delivery, touched, runner))
    return {"requeued": list(result.delivery_ids), "runs": list(result.run_ids),
            "left_failed": [{"id": i, "why": why} for i, why in result.refused]}


def _worker(delivery: DeliveryService, run_id: int, runner: Runner) -> Callable[[], object]:
    return lambda: delivery.work(run_id, stop=runner.stop)


def start_campaign(components: Components, runner: Runner, campaign_id: int, now: datetime, actor: str) -> int:
    """Plan a campaign's run now and send it in the background; returns the run id."""
    campaigns = components.campaigns
    report = campaigns.plan(campaign_id, now=now)
    components.audit.record(now, actor, "campaign.send", "campaign", campaign_id, f"run {report.run_id}")

    def work() -> None:
        components.delivery.work(report.run_id, stop=runner.stop)
        campaigns.finish(campaign_id)

    runner.start(f"campaign-{campaign_id}", work)
    return report.run_id


def operators_router(components: Components, context: WebContext, *, admin_token: str | None) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(token_check(admin_token))], tags=["operators"])
    runner = context.runner

    @router.post("/deliveries/requeue")
    def requeue(body: RequeueBody) -> Any:
        if not body.ids and body.run_id is None and body.reply is None:
            raise ApiProblem(422, "say which: ids, run_id or reply", "ids")
        try:
            return requeue_and_send(components, runner, context.clock(), API_ACTOR, ids=body.ids, run_id=body.run_id,
                                    reply=body.reply, reason=body.reason, send=body.send)
        except UsageError as e:
            raise ApiProblem(422, str(e)) from e

    @router.get("/deliveries/failures")
    def failures() -> Any:
        return {"groups": jsonable_encoder(components.delivery.failure_groups(100)),
                "recent": jsonable_encoder(components.delivery.failures(100))}

    @router.get("/campaigns")
    def list_campaigns() -> Any:
        return {"campaigns": [_out(c) for c in components.campaigns.recent(100)]}

    @router.post("/campaigns", status_code=201)
    def create_campaign(body: CampaignBody) -> Any:
        try:
            new = NewCampaign.checked(body.subject, body.body, body.categories, context.categories.slugs(), body.variant)
            campaign = components.campaigns.create(new, now=context.clock(), actor=API_ACTOR, send_at=body.send_at)
        except CampaignError as e:
            raise ApiProblem(422, str(e), str(e).split(":", 1)[0]) from e
        return _out(campaign)

    @router.get("/campaigns/{campaign_id}")
    def get_campaign(campaign_id: CampaignId) -> Any:
        return _out(_found(components, campaign_id, counts=True))

    @router.get("/campaigns/{campaign_id}/preview", response_class=HTMLResponse)
    def preview_campaign(campaign_id: CampaignId) -> Any:
        _found(components, campaign_id)
        return HTMLResponse(components.campaigns.preview(campaign_id).html,
                            headers={"content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:"})

    @router.post("/campaigns/{campaign_id}/test")
    def test_campaign(campaign_id: CampaignId, body: TestBody) -> Any:
        _found(components, campaign_id)
        try:
            result = components.campaigns.send_test(campaign_id, body.to, now=context.clock())
        except UsageError as e:
            raise ApiProblem(422, str(e), "to") from e
        return {"to": body.to, "result": jsonable_encoder(result)}

    @router.post("/campaigns/{campaign_id}/send", status_code=202)
    def send_campaign(campaign_id: CampaignId, body: SendCampaignBody) -> Any:
        _found(components, campaign_id)
        try:
            if body.send_at is not None:
                return JSONResponse(_out(components.campaigns.schedule(campaign_id, body.send_at)), status_code=200)
            run_id = start_campaign(components, runner, campaign_id, context.clock(), API_ACTOR)
        except CampaignError as e:
            raise ApiProblem(409, str(e)) from e
        return {"run_id": run_id, "status_url": f"/api/sends/{run_id}", "campaign_url": f"/api/campaigns/{campaign_id}"}

    return router


def _found(components: Components, campaign_id: int, *, counts: bool = False) -> Campaign:
    try:
        return components.campaigns.get(campaign_id, counts=counts)
    except CampaignError as e:
        raise ApiProblem(404, str(e)) from e


def _out(campaign: Campaign) -> dict[str, Any]:
    return {k: jsonable_encoder(v) for k, v in vars(campaign).items()}

"""Console pages: the dashboard, runs, manual sends, failures to requeue, campaigns."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from syndicate.bounces import BounceEvents, deliverability
from syndicate.campaigns import CampaignError, NewCampaign
from syndicate.delivery import RunReport, SendRequest, deployment_state
from syndicate.digest import select_digest
from syndicate.errors import SyndicateError, UsageError
from syndicate.subscribers import (
    Frequency,
    InvalidSubscriberError,
    PlaceholderLinks,
    SubscriberStatus,
    UnknownSubscriberError,
)
from syndicate.web.console._core import (
    FRAME_POLICY,
    Console,
    PostedForm,
    _headers,
    _int,
    _to,
)
from syndicate.web.context import WebContext
from syndicate.web.operators_api import requeue_and_send, start_campaign
from syndicate.wiring import Components

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- dashboard and runs

def _rate(run: RunReport, now: datetime) -> str:
    seconds = ((run.finished_at or now) - run.started_at).total_seconds()
    return f"{run.sent / seconds:.1f}" if seconds > 0 else "-"


def _deliverability(components: Components, now: datetime) -> dict[str, Any]:
    """Bounce and complaint counts and rates over the last run and 7 days (#13), with warnings."""
    bounces = components.settings.bounces
    return deliverability(BounceEvents(components.database), now, bounce_warning=bounces.bounce_rate_warning,
                          complaint_warning=bounces.complaint_rate_warning)


def _deployment(components: Components, now: datetime) -> dict[str, Any]:
    """Who sends (#14): the delivery mode, live `syndicate worker` processes, the queue, the lease holder."""
    settings = components.settings
    state = deployment_state(components.database, settings.outbox.claim_timeout, now)
    return {"mode": settings.delivery.mode, **state}


def dashboard_routes(router: APIRouter, console: Console) -> None:
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
            health=_deliverability(components, context.clock()), deployment=_deployment(components, context.clock()),
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



# ---------------------------------------------------------------- send

def _send_request(form: PostedForm) -> SendRequest:
    frequency = form.get("frequency") or None
    return SendRequest(
        frequency=Frequency(frequency) if frequency in {f.value for f in Frequency} else None,
        categories=tuple(c for c in form.getlist("categories") if c)[:200],
        subscriber=(form.get("subscriber") or "").strip()[:320] or None,
    )


def send_routes(router: APIRouter, console: Console) -> None:
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

def failure_routes(router: APIRouter, console: Console) -> None:
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
        reply = form.get("reply")
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

def campaign_routes(router: APIRouter, console: Console) -> None:
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
        subject, body, chosen = form.get("subject") or "", form.get("body") or "", form.getlist("categories")
        when, variant = form.get("send_at") or "", form.get("variant") or "letter"
        values = {"subject": subject, "body": body, "categories": chosen, "send_at": when, "variant": variant}
        try:
            send_at = _local_time(when, components.settings.site.timezone)
            new = NewCampaign.checked(subject, body, chosen, context.categories.slugs(), variant)
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



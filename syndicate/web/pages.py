"""The subscriber pages: signup, confirm, preferences, unsubscribe (HTML forms, no JavaScript).

Links in emails are only ever *shown* by a GET: mail scanners fetch links, so confirming and
unsubscribing happen on a POST (the button on the page, or the RFC 8058 one-click POST).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from syndicate.abuse import SignupLimits, client_address, mailbox_key
from syndicate.site import template_path
from syndicate.subscribers import (
    WEEKDAYS,
    InvalidLinkError,
    InvalidSubscriberError,
    NewSubscriber,
    Subscriber,
    SubscriberStatus,
    TransitionError,
    UnknownSubscriberError,
    canonical_zones,
    describe_schedule,
    new_subscriber,
)
from syndicate.web.context import WebContext
from syndicate.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_MAX_AGE,
    CSRF_SAMESITE,
    ServedForm,
    csrf_check,
    csrf_field,
    loggable_path,
    new_csrf_nonce,
    parse_nonce,
)

log = logging.getLogger(__name__)

TEMPLATE_FOLDER = Path(__file__).resolve().parent.parent / "templates" / "pages"
STYLESHEET = Path(__file__).resolve().parent.parent / "templates" / "site" / "site.css"  # one stylesheet for site and pages
LABELS = {
    "email": "Email address", "name": "Name", "categories": "Categories", "frequency": "How often",
    "weekday": "Day of the weekly digest", "timezone": "Time zone", "send_hour": "Send at", "form": "Form",
}
FREQUENCIES = (("daily", "Daily"), ("weekly", "Weekly"))
TEXT_LIMIT = 400  # characters kept from any one form field
LINK_STATUS = {"expired": 410}
HONEYPOT_FIELD = "website"  # hidden from people; robots that fill every field fill it too


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_FOLDER),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class Pages:
    """Renders the pages and handles their forms for one app."""

    def __init__(self, context: WebContext) -> None:
        self.context = context
        self.environment = template_environment()
        self.timezones = canonical_zones()
        areas: dict[str, list[str]] = {}
        for zone in self.timezones:
            areas.setdefault(zone.split("/", 1)[0], []).append(zone)
        self.timezones_by_area = tuple((area, tuple(zones)) for area, zones in areas.items())
        # the site's stylesheet, [output] templates' own if it has one: the pages look like the site
        self.stylesheet = template_path(STYLESHEET.name, STYLESHEET.parent, context.build.output.templates).read_bytes()
        self.script = (TEMPLATE_FOLDER / "signup.js").read_bytes()
        self.limits = context.signup_limits

    # -- rendering

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        """The page, with a CSRF field for its form and the cookie holding the nonce it signs."""
        now = self.context.clock()
        nonce = parse_nonce(request.cookies.get(CSRF_COOKIE))
        fresh = nonce is None
        if fresh:
            nonce = new_csrf_nonce()
        settings = self.context.settings
        html = self.environment.get_template(template).render({
            "site_title": settings.site.title, "language": settings.site.language, "labels": LABELS,
            "csrf": csrf_field(self.context.signer, nonce, request.url.path, now) if nonce is not None else "",
            "honeypot": HONEYPOT_FIELD, "errors": {},
            "detect_timezone": False, "home_url": self.context.urls.home(), "category_url": self.context.urls.category,
            "nav": self.context.categories.get(),
            "archive_url": self.context.urls.archive() if settings.output.pages else None, **values,
        })
        response = HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})
        if fresh:
            response.set_cookie(
                CSRF_COOKIE, str(nonce), httponly=True, samesite=CSRF_SAMESITE, path="/",
                secure=settings.site.base_url.startswith("https://"),
            )
        return response

    def message(self, request: Request, heading: str, *paragraphs: str, status: int = 200, action: str | None = None,
                button: str = "", links: tuple[tuple[str, str], ...] = ()) -> HTMLResponse:
        return self.render(request, "message.html.j2", status, heading=heading, paragraphs=paragraphs,
                           action=action, button=button, links=links)

    def choices(self, values: Mapping[str, Any], errors: Mapping[str, str]) -> dict[str, Any]:
        return {
            "values": values, "errors": dict(errors), "categories": self.context.categories.get(),
            "frequencies": FREQUENCIES, "weekdays": WEEKDAYS, "timezones": self.timezones,
            "timezones_by_area": self.timezones_by_area,
        }

    def signup_defaults(self) -> dict[str, Any]:
        defaults = self.context.store.defaults
        return {
            "email": "", "name": "", "categories": (), "frequency": defaults.frequency.value,
            "timezone": defaults.timezone, "send_hour": defaults.send_hour, "weekday": WEEKDAYS[defaults.weekday],
        }

    def link_error(self, request: Request, error: InvalidLinkError, purpose: str) -> HTMLResponse:
        if error.reason == "expired" and purpose == "confirm":
            return self.message(
                request, "This confirmation link has expired",
                "Confirmation links work for a limited time. Sign up again and we will send you a new one.",
                status=410, links=(("/subscribe", "Sign up again"),),
            )
        if error.reason == "expired":
            return self.message(
                request, "This link has expired",
                "Open the preferences link in your most recent digest; every digest carries a fresh one.",
                status=410,
            )
        return self.message(
            request, "This link is not valid",
            f"We could not read this {purpose} link: it may have been cut short or changed. "
            "Copy the whole link from the email, or sign up again.",
            status=400, links=(("/subscribe", "Sign up"),),
        )

    def gone(self, request: Request) -> HTMLResponse:
        return self.message(
            request, "No such subscription", "This address is no longer in our list.",
            status=404, links=(("/subscribe", "Sign up again"),),
        )

    # -- forms

    def served_form(self, request: Request, form: FormData) -> ServedForm | None:
        """The form this POST answers, if its CSRF token is genuine, made for this form and cookie, and
        not used before (it is spent now). None otherwise."""
        field = form.get(CSRF_FIELD)
        now = self.context.clock()
        served = csrf_check(self.context.signer, request.cookies.get(CSRF_COOKIE),
                            field if isinstance(field, str) else None, request.url.path, now)
        if served is None:
            log.info("form refused: bad or missing CSRF token path=%s", loggable_path(request.url.path))
        elif not self.limits.spend_form(served.form_id, expires_at=served.served_at + timedelta(seconds=CSRF_MAX_AGE),
                                        now=now):
            log.info("form refused: CSRF token already used path=%s", loggable_path(request.url.path))
            served = None
        return served

    def csrf_valid(self, request: Request, form: FormData) -> bool:
        return self.served_form(request, form) is not None

    def subscriber_for(self, purpose: str, token: str, now: datetime) -> Subscriber:
        """The subscriber a genuine `purpose` token names (InvalidLinkError, UnknownSubscriberError)."""
        return self.context.store.get(self.context.signer.check(purpose, token, now=now))


def form_values(form: FormData) -> dict[str, Any]:
    """The submitted values, as strings cut to a sane length (categories as a tuple)."""
    def text(name: str) -> str:
        value = form.get(name)
        return value[:TEXT_LIMIT] if isinstance(value, str) else ""

    return {
        "email": text("email"), "name": text("name"),
        "categories": tuple(v[:TEXT_LIMIT] for v in form.getlist("categories") if isinstance(v, str))[:200],
        "frequency": text("frequency"), "timezone": text("timezone"),
        "send_hour": text("send_hour"), "weekday": text("weekday"),
    }


def page_router(pages: Pages) -> APIRouter:
    """The routes of the subscriber pages (excluded from the OpenAPI document)."""
    router = APIRouter(include_in_schema=False)
    context = pages.context

    @router.get("/assets/site.css")
    @router.get("/assets/pages.css")
    def stylesheet() -> Response:
        return Response(pages.stylesheet, media_type="text/css", headers={"cache-control": "public, max-age=3600"})

    @router.get("/assets/signup.js")
    def script() -> Response:
        return Response(pages.script, media_type="text/javascript", headers={"cache-control": "public, max-age=3600"})

    @router.get("/subscribe")
    def signup_form(request: Request) -> HTMLResponse:
        """The form; `?email=...&categories=...` (the site's subscribe boxes) fill it in."""
        values = pages.signup_defaults()
        values["email"] = request.query_params.get("email", "")[:TEXT_LIMIT]
        values["categories"] = tuple(c[:TEXT_LIMIT] for c in request.query_params.getlist("categories")[:200])
        return pages.render(request, "signup.html.j2", detect_timezone=True, **pages.choices(values, {}))

    @router.post("/subscribe")
    async def signup(request: Request) -> HTMLResponse:
        form = await request.form()
        values = form_values(form)
        served = await run_in_threadpool(pages.served_form, request, form)
        if served is None:
            errors = {"form": "this form expired or came from another site; please check it and send it again"}
            return pages.render(request, "signup.html.j2", 403, **pages.choices(values, errors))
        try:  # in a thread: the categories may be re-read, the relay asked whether it carries the address
            new = await run_in_threadpool(
                lambda: new_subscriber(
                    values["email"], name=values["name"], categories=values["categories"],
                    valid_categories=context.categories.slugs(), defaults=context.store.defaults,
                    frequency=values["frequency"], timezone=values["timezone"], send_hour=values["send_hour"],
                    weekday=values["weekday"], addresses=context.addresses,
                )
            )
        except InvalidSubscriberError as e:
            return pages.render(request, "signup.html.j2", 422, **pages.choices(values, {e.field: e.reason}))
        client = client_address(request.client.host if request.client else None,
                                request.headers.getlist("x-forwarded-for"), context.settings.http.trusted_proxies)
        suspect = robot_sign(form, served, context.clock(), context.settings.signup.min_form_seconds)
        await run_in_threadpool(_sign_up, context, pages.limits, new, client, suspect)
        return pages.message(
            request, "Check your inbox",
            "If this address can receive our digests, an email with a confirmation link is on its way.",
            "Open it and press the button to start your subscription. Nothing is sent until you do.",
        )

    @router.get("/confirm/{token}")
    def confirm_page(request: Request, token: str) -> HTMLResponse:
        now = context.clock()
        try:
            subscriber = pages.subscriber_for("confirm", token, now)
        except InvalidLinkError as e:
            return pages.link_error(request, e, "confirm")
        except UnknownSubscriberError:
            return pages.gone(request)
        if subscriber.status is SubscriberStatus.ACTIVE:  # the link opened again after use
            return _subscribed_page(pages, request, subscriber, now, "You are already subscribed")
        if subscriber.status is not SubscriberStatus.PENDING:
            return _unsubscribed_since(pages, request, subscriber)
        return pages.message(
            request, "Confirm your subscription",
            f"Press the button to start receiving the digests you chose at {subscriber.email}.",
            action=str(request.url.path), button="Confirm my subscription",
        )

    @router.post("/confirm/{token}")
    def confirm(request: Request, token: str) -> HTMLResponse:
        now = context.clock()
        try:
            subscriber = pages.subscriber_for("confirm", token, now)
            was_pending = subscriber.status is SubscriberStatus.PENDING
            subscriber = context.store.confirm(subscriber.id, now)
        except InvalidLinkError as e:
            return pages.link_error(request, e, "confirm")
        except UnknownSubscriberError:
            return pages.gone(request)
        except TransitionError:
            return pages.message(
                request, "You unsubscribed from this address",
                "Confirming an old link does not resubscribe you. Sign up again if you want the digests back.",
                status=409, links=(("/subscribe", "Sign up again"),),
            )
        # Only the request whose transaction made the change (its `now` is the status change's time)
        # sends the welcome: two clicks at once never mail it twice.
        if not (was_pending and subscriber.status_changed_at == now):
            return _subscribed_page(pages, request, subscriber, now, "You are already subscribed")
        context.runner.start(f"welcome-{subscriber.id}", lambda: _welcome(context, subscriber, now))
        return _subscribed_page(pages, request, subscriber, now, "You are subscribed")

    @router.get("/preferences/{token}")
    def preferences_form(request: Request, token: str) -> HTMLResponse:
        try:
            subscriber = pages.subscriber_for("preferences", token, context.clock())
        except InvalidLinkError as e:
            return pages.link_error(request, e, "preferences")
        except UnknownSubscriberError:
            return pages.gone(request)
        return _preferences_page(pages, request, token, subscriber, _current(subscriber), {})

    @router.post("/preferences/{token}")
    async def preferences(request: Request, token: str) -> HTMLResponse:
        now = context.clock()
        form = await request.form()
        try:
            subscriber = pages.subscriber_for("preferences", token, now)
        except InvalidLinkError as e:
            return pages.link_error(request, e, "preferences")
        except UnknownSubscriberError:
            return pages.gone(request)
        values = form_values(form)
        if not await run_in_threadpool(pages.csrf_valid, request, form):
            errors = {"form": "this form expired or came from another site; please check it and send it again"}
            return _preferences_page(pages, request, token, subscriber, values, errors, status=403)
        try:
            subscriber = context.store.set_preferences(
                subscriber.id, now=now, valid_categories=context.categories.slugs(), categories=values["categories"],
                frequency=values["frequency"], timezone=values["timezone"], send_hour=values["send_hour"],
                weekday=values["weekday"],
            )
        except InvalidSubscriberError as e:
            return _preferences_page(pages, request, token, subscriber, values, {e.field: e.reason}, status=422)
        return _preferences_page(pages, request, token, subscriber, _current(subscriber), {}, saved=True,
                                 schedule=describe_schedule(subscriber, now, which="next")
                                 if subscriber.status is SubscriberStatus.ACTIVE else "")

    @router.get("/unsubscribe/{token}")
    def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
        try:
            subscriber = pages.subscriber_for("unsubscribe", token, context.clock())
        except InvalidLinkError as e:
            return pages.link_error(request, e, "unsubscribe")
        except UnknownSubscriberError:
            return pages.gone(request)
        if subscriber.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
            return _unsubscribed_since(pages, request, subscriber)
        return pages.message(
            request, f"Unsubscribe {subscriber.email}?", "Press the button to stop every digest to this address.",
            action=str(request.url.path), button="Unsubscribe",
        )

    @router.post("/unsubscribe/{token}")
    def unsubscribe(request: Request, token: str) -> HTMLResponse:
        """The button's POST and the RFC 8058 one-click POST alike: the signed token is the authority."""
        now = context.clock()
        address = "this address"
        try:
            subscriber_id = context.signer.check("unsubscribe", token, now=now)
            address = context.store.unsubscribe(subscriber_id, now).email
        except InvalidLinkError as e:
            return pages.link_error(request, e, "unsubscribe")
        except UnknownSubscriberError:
            pass  # removed entirely: as unsubscribed as can be
        return pages.message(
            request, "You are unsubscribed", f"No more digests will be sent to {address}.",
            links=(("/subscribe", "Changed your mind? Sign up again"),),
        )

    return router


def robot_sign(form: FormData, served: ServedForm, now: datetime, min_seconds: float) -> str | None:
    """Why this post looks like a robot's (the honeypot filled in, posted too soon after serving), or None."""
    if form.get(HONEYPOT_FIELD):
        return "honeypot"
    if (now - served.served_at).total_seconds() < min_seconds:
        return "too-fast"
    return None


def _sign_up(context: WebContext, limits: SignupLimits, new: NewSubscriber, client: str, suspect: str | None) -> None:
    """Store the sign-up; mail the confirmation in the background, so that neither the page nor its
    timing tells a known address from a new one (what happened is logged, never shown). A sign-up over
    a limit, or one a robot made, is recorded and refused: nothing is stored and nothing is sent."""
    now = context.clock()
    mailbox, domain = mailbox_key(new.email)
    if limits.admit(client=client, mailbox=mailbox, domain=domain, now=now, refused=suspect) is not None:
        return
    subscriber = context.store.sign_up(new, now=now, source="signup")
    if subscriber.status is not SubscriberStatus.PENDING:
        log.info("sign-up for an active subscriber id=%s: sending the already-subscribed email", subscriber.id)

        def remind() -> None:
            context.notices.already_subscribed(subscriber, now=now, categories=context.categories.named(subscriber.categories))

        context.runner.start(f"already-subscribed-{subscriber.id}", remind)
        return

    def mail() -> None:
        context.confirmations.send(subscriber, now=now, categories=context.categories.named(subscriber.categories))

    context.runner.start(f"confirmation-{subscriber.id}", mail)


def _welcome(context: WebContext, subscriber: Subscriber, now: datetime) -> None:
    context.notices.welcome(subscriber, now=now, categories=context.categories.named(subscriber.categories))


def _subscribed_page(pages: Pages, request: Request, subscriber: Subscriber, now: datetime, heading: str) -> HTMLResponse:
    """After confirming (or a confirm link opened again): who is subscribed and when the digests come."""
    context = pages.context
    preferences = context.urls.preferences(context.signer.make("preferences", subscriber.id, now=now))
    which = "first" if heading == "You are subscribed" else "next"
    return pages.message(
        request, heading, f"{subscriber.email} gets the {context.settings.site.title} digest.",
        describe_schedule(subscriber, now, which=which), links=((preferences, "Change your preferences"),),
    )


def _unsubscribed_since(pages: Pages, request: Request, subscriber: Subscriber) -> HTMLResponse:
    since = f" since {subscriber.status_changed_at:%-d %B %Y}" if subscriber.status_changed_at else ""
    return pages.message(
        request, "You are already unsubscribed",
        f"{subscriber.email} has been unsubscribed{since}: nothing is sent to it.",
        "Opening an old link does not subscribe you again.",
        links=(("/subscribe", "Sign up again"),),
    )


def _current(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "categories": subscriber.categories, "frequency": subscriber.frequency.value, "timezone": subscriber.timezone,
        "send_hour": subscriber.send_hour, "weekday": WEEKDAYS[subscriber.weekday],
    }


def _preferences_page(pages: Pages, request: Request, token: str, subscriber: Subscriber, values: Mapping[str, Any],
                      errors: Mapping[str, str], *, status: int = 200, saved: bool = False, schedule: str = "") -> HTMLResponse:
    context = pages.context
    unsubscribe_token = context.signer.make("unsubscribe", subscriber.id, now=context.clock())
    return pages.render(
        request, "preferences.html.j2", status, email=subscriber.email, saved=saved, schedule=schedule,
        unsubscribed=subscriber.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED),
        action=str(request.url.path), unsubscribe_action=f"/unsubscribe/{unsubscribe_token}",
        **pages.choices(values, errors),
    )


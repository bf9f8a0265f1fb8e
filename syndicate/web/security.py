"""Request hardening: security headers, the request body size limit, CSRF tokens for the forms.

CSRF is a signed double submit: a random nonce lives in a SameSite=Lax, HttpOnly cookie,
and each form carries a token signed with the link secret (tokens purpose "csrf") that binds
the cookie's nonce, the path the form posts to, the time it was served and a random form id.
A POST is accepted only when the token is genuine, recent, made for this form and this cookie,
and not used before (the pages spend the form id). Another site can neither read nor set our
cookie, so it cannot forge the pair. Lax, not Strict: a Lax cookie is still never sent with
another site's POST, and a Strict one would be missing when a subscriber arrives from the link in
their mail, so the page would start a new nonce and a form open in another tab would fail.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from syndicate.subscribers import InvalidLinkError, LinkSigner
from syndicate.web.static import ASGIApp, Receive, Scope, Send

CSRF_COOKIE = "syndicate_csrf"
CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE = 24 * 3600
CSRF_SAMESITE: Literal["lax"] = "lax"  # see the module docstring

# The subscriber pages load nothing but their own stylesheet and script and post only to themselves.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The built site has an inline <style> and may show article images from elsewhere; never scripts.
SITE_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
SITE_HEADERS = (*COMMON_HEADERS, (b"content-security-policy", SITE_POLICY.encode()))


class SecurityHeaders:
    """ASGI middleware: nosniff, referrer policy and frame denial on every response; the strict
    page policy on responses that did not set their own Content-Security-Policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in (*COMMON_HEADERS, (b"content-security-policy", PAGE_POLICY.encode())):
                    if name not in present:
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(Exception):
    """Raised inside the app when a streamed body passes the limit."""


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413, whether announced by
    Content-Length or streamed without one."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await _too_large(send)
                    return
        received = 0
        started = False

        async def counting_receive() -> MutableMapping[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _too_large(send)


async def _too_large(send: Send) -> None:
    text = b"Request body too large"
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode()),
        (b"connection", b"close"), *COMMON_HEADERS, (b"content-security-policy", PAGE_POLICY.encode()),
    ]})
    await send({"type": "http.response.body", "body": text})


TOKEN_PATHS = ("/confirm/", "/preferences/", "/unsubscribe/")


def loggable_path(path: str) -> str:
    """`path` fit for a log line: the signed token of a subscriber link replaced by `<token>` (a
    preferences token is good for months; logs are read by more people than the mail is)."""
    for prefix in TOKEN_PATHS:
        if path.startswith(prefix):
            return prefix + "<token>"
    return path[:200]


def new_csrf_nonce() -> int:
    return secrets.randbits(62)


def parse_nonce(cookie: str | None) -> int | None:
    if cookie and cookie.isdigit() and len(cookie) <= 20:
        return int(cookie)
    return None


@dataclass(frozen=True)
class ServedForm:
    """A genuine form token: which served form it was (`form_id`, spent on use) and when it was served."""

    form_id: str
    served_at: datetime


def _binding(nonce: int, form: str, served: int, form_id: str) -> int:
    """What the signature covers: the cookie's nonce, the form's path, the time served and the form's id."""
    digest = hashlib.sha256(f"{nonce}|{form}|{served}|{form_id}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


def csrf_field(signer: LinkSigner, nonce: int, form: str, now: datetime) -> str:
    """The hidden field value for form `form` (the path it posts to) shown to the holder of cookie `nonce`."""
    served = int(now.timestamp())
    form_id = secrets.token_hex(12)
    return f"{served}.{form_id}.{signer.make('csrf', _binding(nonce, form, served, form_id), now=now)}"


def csrf_check(signer: LinkSigner, cookie: str | None, field: str | None, form: str, now: datetime) -> ServedForm | None:
    """The served form when `field` is a genuine, recent token for `form` and the nonce in `cookie`."""
    nonce = parse_nonce(cookie)
    if nonce is None or not field or len(field) > 200:
        return None
    served, _, rest = field.partition(".")
    form_id, _, signed = rest.partition(".")
    if not served.isdigit() or len(served) > 12 or not form_id or not signed:
        return None
    try:
        bound = signer.check("csrf", signed, CSRF_MAX_AGE, now=now)
    except InvalidLinkError:
        return None
    if not hmac.compare_digest(str(bound), str(_binding(nonce, form, int(served), form_id))):
        return None
    return ServedForm(form_id, datetime.fromtimestamp(int(served), UTC))

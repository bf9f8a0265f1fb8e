"""Request hardening: security headers, the request body size limit, CSRF tokens for the forms.

CSRF is a signed double submit: a random nonce lives in a SameSite=Strict, HttpOnly cookie,
and each form carries the nonce signed with the link secret (tokens purpose "csrf"). A POST is
accepted only when the signed field is genuine, recent, and names the cookie's nonce. Another
site can neither read nor set our cookie, so it cannot forge the pair.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

from syndicate.subscribers import InvalidLinkError, LinkSigner
from syndicate.web.static import Receive, Scope, Send

CSRF_COOKIE = "syndicate_csrf"
CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE = 24 * 3600

# The subscriber pages load nothing but their own stylesheet and post only to themselves.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
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

    def __init__(self, app: Any) -> None:
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

    def __init__(self, app: Any, max_bytes: int) -> None:
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
        (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": text})


def new_csrf_nonce() -> int:
    return secrets.randbits(62)


def parse_nonce(cookie: str | None) -> int | None:
    if cookie and cookie.isdigit() and len(cookie) <= 20:
        return int(cookie)
    return None


def csrf_field(signer: LinkSigner, nonce: int, now: datetime) -> str:
    """The hidden field value for a form shown to the holder of cookie `nonce`."""
    return signer.make("csrf", nonce, now=now)


def csrf_ok(signer: LinkSigner, cookie: str | None, field: str | None, now: datetime) -> bool:
    """True when `field` is a genuine, recent signature of the nonce in `cookie`."""
    nonce = parse_nonce(cookie)
    if nonce is None or not field:
        return False
    try:
        signed = signer.check("csrf", field, CSRF_MAX_AGE, now=now)
    except InvalidLinkError:
        return False
    return hmac.compare_digest(str(signed), str(nonce))

"""Provider webhooks under /webhooks/: each request authenticated (bearer, ECDSA, HMAC, basic auth, SNS
certificate), checked against replay, mapped to our event kinds and handed to the bounce processor.

A webhook whose secret is not configured answers 404. A forged, unsigned or replayed request answers
401 or 403 and changes nothing.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import delete, insert, select

from syndicate.bounces import COMPLAINT, HARD, IGNORED, SOFT, UNSUBSCRIBE, BounceProcessor, ProviderEvent
from syndicate.config import BounceWebhookSettings
from syndicate.storage.schema import webhook_nonces

log = logging.getLogger(__name__)

MAX_EVENTS = 1000  # per request
MAX_CERT_BYTES = 64 * 1024


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "body is not JSON") from None


def _event(kind: str, recipient: Any, status: Any, diagnostic: Any, event_id: Any, payload: Any) -> ProviderEvent:
    return ProviderEvent(kind, str(recipient) if recipient else None, str(status) if status not in (None, "") else None,
                         str(diagnostic or "")[:2000], str(event_id), json.dumps(payload, sort_keys=True).encode())


# -- mapping each provider's events to ours (None: an event we do not record, such as "delivered")

def generic_events(data: Any) -> list[ProviderEvent]:
    items = data.get("events", [data]) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise Refused(400, "expected an event object or {\"events\": [...]}")
    out = []
    for item in items[:MAX_EVENTS]:
        if not isinstance(item, dict) or item.get("type") not in (HARD, SOFT, COMPLAINT, UNSUBSCRIBE) or not item.get("id"):
            raise Refused(400, "each event needs an id and a type: hard, soft, complaint or unsubscribe")
        out.append(_event(item["type"], item.get("email"), item.get("status"), item.get("diagnostic"), item["id"], item))
    return out


def sendgrid_events(data: Any) -> list[ProviderEvent]:
    if not isinstance(data, list):
        raise Refused(400, "expected a JSON array of SendGrid events")
    out = []
    for item in data[:MAX_EVENTS]:
        if not isinstance(item, dict):
            continue
        name = item.get("event")
        kind = {"bounce": HARD if item.get("type", "bounce") == "bounce" else SOFT, "blocked": SOFT, "spamreport": COMPLAINT,
                "unsubscribe": UNSUBSCRIBE, "group_unsubscribe": UNSUBSCRIBE, "dropped": IGNORED}.get(str(name))
        if kind is not None:
            out.append(_event(kind, item.get("email"), item.get("status"), item.get("reason"),
                              item.get("sg_event_id") or f"{item.get('sg_message_id')}:{name}", item))
    return out


def mailgun_events(data: Any) -> list[ProviderEvent]:
    event = data.get("event-data") if isinstance(data, dict) else None
    if not isinstance(event, dict):
        raise Refused(400, "expected Mailgun's {signature, event-data}")
    name, status = event.get("event"), _object(event.get("delivery-status"))
    if name == "failed":
        kind = HARD if event.get("severity") == "permanent" else SOFT
    else:
        kind = {"complained": COMPLAINT, "unsubscribed": UNSUBSCRIBE}.get(str(name), "")
    if not kind:
        return []
    code = status.get("enhanced-code") or status.get("code")
    return [_event(kind, event.get("recipient"), code, status.get("description") or status.get("message"),
                   event.get("id") or data["signature"].get("token"), data)]


def postmark_events(data: Any) -> list[ProviderEvent]:
    if not isinstance(data, dict):
        raise Refused(400, "expected a Postmark webhook object")
    record = data.get("RecordType")
    if record == "Bounce":
        kind = {"HardBounce": HARD, "BadEmailAddress": HARD, "ManuallyDeactivated": HARD, "SpamComplaint": COMPLAINT,
                "SoftBounce": SOFT, "Transient": SOFT, "DnsError": SOFT, "Blocked": SOFT}.get(str(data.get("Type")), IGNORED)
    elif record == "SpamComplaint":
        kind = COMPLAINT
    elif record == "SubscriptionChange" and data.get("SuppressSending"):
        kind = UNSUBSCRIBE
    else:
        return []
    return [_event(kind, data.get("Email") or data.get("Recipient"), data.get("TypeCode"), data.get("Description") or data.get("Details"),
                   f"{record}:{data.get('ID') or data.get('MessageID')}", data)]


def ses_events(message: Any, message_id: str) -> list[ProviderEvent]:
    if not isinstance(message, dict):
        return []
    kind_of = message.get("notificationType") or message.get("eventType")
    out = []
    if kind_of == "Bounce":
        bounce = _object(message.get("bounce"))
        kind = HARD if bounce.get("bounceType") == "Permanent" else SOFT
        for i, r in enumerate(_objects(bounce.get("bouncedRecipients"))):
            out.append(_event(kind, r.get("emailAddress"), r.get("status"), r.get("diagnosticCode"), f"{message_id}:{i}", message))
    elif kind_of == "Complaint":
        complaint = _object(message.get("complaint"))
        if complaint.get("complaintFeedbackType") == "not-spam":
            return []
        for i, r in enumerate(_objects(complaint.get("complainedRecipients"))):
            out.append(_event(COMPLAINT, r.get("emailAddress"), complaint.get("complaintFeedbackType") or "abuse",
                              f"SES complaint from {complaint.get('userAgent') or 'a feedback loop'}", f"{message_id}:{i}", message))
    return out


def _object(value: Any) -> dict[str, Any]:
    """A JSON object where the provider sends one; anything else (a string, a list) as an empty one."""
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> list[dict[str, Any]]:
    """The JSON objects of a list where the provider sends a list of them (at most MAX_EVENTS)."""
    return [item for item in value[:MAX_EVENTS] if isinstance(item, dict)] if isinstance(value, list) else []


# -- authentication

def _secret(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _bearer(request: Request, expected: str) -> None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Refused(401, "missing bearer token")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Refused(403, "wrong bearer token")


def _basic(request: Request, username: str, password: str) -> None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not given:
        raise Refused(401, "missing basic credentials")
    try:
        user, _, secret = base64.b64decode(given.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        raise Refused(401, "malformed basic credentials") from None
    ok_user = hmac.compare_digest(user.encode(), username.encode())
    if not (hmac.compare_digest(secret.encode(), password.encode()) and ok_user):
        raise Refused(403, "wrong basic credentials")


def _fresh(timestamp: str | None, now: datetime, window: int) -> None:
    try:
        moment = float(timestamp or "")
    except ValueError:
        raise Refused(401, "missing or malformed timestamp") from None
    if abs(now.timestamp() - moment) > window:
        raise Refused(403, "timestamp outside the accepted window (a replay, or a clock far off)")


def sendgrid_key(value: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key as shown in its settings (base64 DER) or as PEM."""
    text = value.strip()
    der = text.encode() if text.startswith("-----BEGIN") else base64.b64decode(text)
    key = serialization.load_pem_public_key(der) if text.startswith("-----BEGIN") else serialization.load_der_public_key(der)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("[bounces.webhooks] sendgrid_public_key: not an ECDSA public key")
    return key


def sns_string_to_sign(data: Mapping[str, Any]) -> bytes:
    kind = data.get("Type")
    if kind == "Notification":
        keys = ["Message", "MessageId", *(["Subject"] if data.get("Subject") is not None else []), "Timestamp", "TopicArn", "Type"]
    elif kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    else:
        raise Refused(400, f"unknown SNS message type {kind!r}")
    missing = [k for k in keys if not isinstance(data.get(k), str)]
    if missing:
        raise Refused(401, f"SNS message without {', '.join(missing)}")
    return "".join(f"{k}\n{data[k]}\n" for k in keys).encode()


class SnsVerifier:
    """Checks SNS signatures with the certificate from an allow-listed https host (cached per URL)."""

    def __init__(self, hosts: tuple[str, ...], ca_file: Any = None, timeout: float = 10.0) -> None:
        self.hosts = hosts
        self.context = ssl.create_default_context()
        if ca_file is not None:
            self.context.load_verify_locations(cafile=str(ca_file))
        self.timeout = timeout
        self._certs: dict[str, x509.Certificate] = {}

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        return parts.scheme == "https" and any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in self.hosts)

    def certificate(self, url: str) -> x509.Certificate:
        if not self.allowed(url) or not urlsplit(url).path.endswith(".pem"):
            raise Refused(403, "signing certificate not from an allow-listed https host")
        if url not in self._certs:
            try:
                with httpx.Client(verify=self.context, timeout=self.timeout, follow_redirects=False) as client:
                    answer = client.get(url)
            except httpx.HTTPError as e:
                raise Refused(403, f"signing certificate could not be fetched: {type(e).__name__}") from None
            if answer.status_code != 200 or len(answer.content) > MAX_CERT_BYTES:
                raise Refused(403, f"signing certificate could not be fetched: HTTP {answer.status_code}")
            try:
                self._certs[url] = x509.load_pem_x509_certificate(answer.content)
            except ValueError:
                raise Refused(403, "signing certificate is not a PEM certificate") from None
        return self._certs[url]

    def verify(self, data: Mapping[str, Any]) -> None:
        version = str(data.get("SignatureVersion"))
        if version not in ("1", "2"):
            raise Refused(401, "unsigned or unknown SignatureVersion")
        try:
            signature = base64.b64decode(str(data.get("Signature", "")), validate=True)
        except ValueError:
            raise Refused(401, "malformed signature") from None
        message = sns_string_to_sign(data)
        certificate = self.certificate(str(data.get("SigningCertURL") or data.get("SigningCertUrl") or ""))
        key = certificate.public_key()
        try:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA1() if version == "1" else hashes.SHA256())  # type: ignore[call-arg, union-attr, arg-type]
        except (InvalidSignature, TypeError, ValueError):
            raise Refused(403, "SNS signature does not verify") from None

    def confirm(self, url: str) -> None:
        if not self.allowed(url):
            raise Refused(403, "SubscribeURL not on an allow-listed https host")
        with httpx.Client(verify=self.context, timeout=self.timeout, follow_redirects=False) as client:
            answer = client.get(url)
        if answer.status_code != 200:
            raise Refused(502, f"subscription confirmation answered HTTP {answer.status_code}")


# -- the router

def webhooks_router(processor: BounceProcessor, config: BounceWebhookSettings, environ: Mapping[str, str],
                    clock: Callable[[], datetime], *, sns: SnsVerifier | None = None) -> APIRouter:
    router = APIRouter(prefix="/webhooks", tags=["webhooks"], include_in_schema=False)
    database = processor.database
    verifier = sns or SnsVerifier(config.sns_cert_hosts, config.sns_ca_file)

    def first_use(source: str, nonce: str, now: datetime, keep: timedelta, later: list[tuple[str, str]]) -> None:
        """Refuse `nonce` (a signature, token or message id) seen within `keep`: a replay. It is recorded
        (`later`) only once the request's events are recorded, so a request that failed half-way can be
        retried by the provider; two copies racing both pass here and the event ids make them one."""
        c = webhook_nonces.c
        key = hashlib.sha256(nonce.encode()).hexdigest()
        with database.write() as connection:
            connection.execute(delete(webhook_nonces).where(c.seen_at < now - keep))
            if connection.execute(select(c.nonce).where(c.source == source, c.nonce == key)).first() is not None:
                raise Refused(403, "replayed request")
        later.append((source, key))

    def remember(nonces: list[tuple[str, str]], now: datetime) -> None:
        c = webhook_nonces.c
        with database.write() as connection:
            for source, key in nonces:
                if connection.execute(select(c.nonce).where(c.source == source, c.nonce == key)).first() is None:
                    connection.execute(insert(webhook_nonces).values(source=source, nonce=key, seen_at=now))

    def take(source: str, events: list[ProviderEvent], now: datetime) -> Response:
        outcomes = [processor.receive_event(event, source=source, now=now) for event in events]
        return JSONResponse({"received": len(outcomes), "actions": [o.action for o in outcomes]})

    Check = Callable[[bytes, datetime, list[tuple[str, str]]], "list[ProviderEvent] | Response"]

    async def handle(request: Request, source: str, check: Check) -> Response:
        body = await request.body()
        now = clock()
        nonces: list[tuple[str, str]] = []
        try:
            result = check(body, now, nonces)
        except Refused as e:
            log.warning("webhook refused source=%s status=%s reason=%s", source, e.status, e.reason)
            return JSONResponse({"error": e.reason}, status_code=e.status)
        answer = result if isinstance(result, Response) else take(source, result, now)
        remember(nonces, now)
        return answer

    def off(name: str) -> Response:
        return JSONResponse({"error": f"the {name} webhook is not configured"}, status_code=404)

    @router.post("/generic")
    async def generic(request: Request) -> Response:
        token = _secret(environ, config.token_env)
        if token is None:
            return off("generic")

        def check(body: bytes, now: datetime, later: list[tuple[str, str]]) -> list[ProviderEvent]:
            _bearer(request, token)
            return generic_events(_json(body))
        return await handle(request, "generic", check)

    @router.post("/sendgrid")
    async def sendgrid(request: Request) -> Response:
        if not config.sendgrid_public_key:
            return off("sendgrid")
        key = sendgrid_key(config.sendgrid_public_key)

        def check(body: bytes, now: datetime, later: list[tuple[str, str]]) -> list[ProviderEvent]:
            signature = request.headers.get("x-twilio-email-event-webhook-signature")
            timestamp = request.headers.get("x-twilio-email-event-webhook-timestamp")
            if not signature or not timestamp:
                raise Refused(401, "unsigned request")
            _fresh(timestamp, now, config.timestamp_window)
            try:
                key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, ValueError):
                raise Refused(403, "signature does not verify") from None
            first_use("sendgrid", signature, now, timedelta(seconds=2 * config.timestamp_window), later)
            return sendgrid_events(_json(body))
        return await handle(request, "sendgrid", check)

    @router.post("/mailgun")
    async def mailgun(request: Request) -> Response:
        signing_key = _secret(environ, config.mailgun_signing_key_env)
        if signing_key is None:
            return off("mailgun")

        def check(body: bytes, now: datetime, later: list[tuple[str, str]]) -> list[ProviderEvent]:
            data = _json(body)
            signed = data.get("signature") if isinstance(data, dict) else None
            if not isinstance(signed, dict) or not all(isinstance(signed.get(k), str) for k in ("timestamp", "token", "signature")):
                raise Refused(401, "unsigned request")
            _fresh(signed["timestamp"], now, config.timestamp_window)
            expected = hmac.new(signing_key.encode(), (signed["timestamp"] + signed["token"]).encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, signed["signature"]):
                raise Refused(403, "signature does not verify")
            first_use("mailgun", signed["token"], now, timedelta(seconds=2 * config.timestamp_window), later)
            return mailgun_events(data)
        return await handle(request, "mailgun", check)

    @router.post("/postmark")
    async def postmark(request: Request) -> Response:
        password = _secret(environ, config.postmark_password_env)
        if password is None or not config.postmark_username:
            return off("postmark")
        username = config.postmark_username

        def check(body: bytes, now: datetime, later: list[tuple[str, str]]) -> list[ProviderEvent]:
            _basic(request, username, password)
            return postmark_events(_json(body))
        return await handle(request, "postmark", check)

    @router.post("/ses")
    async def ses(request: Request) -> Response:
        if not config.sns_topic_arns:
            return off("ses")

        def check(body: bytes, now: datetime, later: list[tuple[str, str]]) -> list[ProviderEvent] | Response:
            data = _json(body)
            if not isinstance(data, dict) or "Signature" not in data:
                raise Refused(401, "unsigned request")
            if data.get("TopicArn") not in config.sns_topic_arns:
                raise Refused(403, "topic not accepted ([bounces.webhooks] sns_topic_arns)")
            verifier.verify(data)
            try:
                sent = datetime.fromisoformat(str(data["Timestamp"]).replace("Z", "+00:00"))
            except ValueError:
                raise Refused(401, "malformed Timestamp") from None
            if abs((now - sent).total_seconds()) > config.sns_max_age:
                raise Refused(403, "SNS message older than [bounces.webhooks] sns_max_age")
            first_use("ses", str(data["MessageId"]), now, timedelta(seconds=2 * config.sns_max_age), later)
            if data["Type"] == "SubscriptionConfirmation":
                verifier.confirm(str(data["SubscribeURL"]))
                log.info("SNS subscription confirmed topic=%s", data["TopicArn"])
                return JSONResponse({"confirmed": data["TopicArn"]})
            if data["Type"] != "Notification":
                return JSONResponse({"ignored": data["Type"]})
            try:
                message = json.loads(data["Message"])
            except ValueError:
                raise Refused(400, "SNS Message is not SES JSON") from None
            return ses_events(message, str(data["MessageId"]))
        return await handle(request, "ses", check)

    return router

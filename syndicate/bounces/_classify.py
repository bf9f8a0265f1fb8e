"""Classification of inbound mail: RFC 3464 DSNs, RFC 5965 ARF complaints, auto-replies, flufl.bounce as the fallback."""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

from syndicate.bounces._verp import AddressTokens, TokenRef
from syndicate.content import make_xml_safe

log = logging.getLogger(__name__)

HARD, SOFT, COMPLAINT, UNSUBSCRIBE, IGNORED, UNRECOGNISED = "hard", "soft", "complaint", "unsubscribe", "ignored", "unrecognised"
EVENT_KINDS = (HARD, SOFT, COMPLAINT, UNSUBSCRIBE, IGNORED)
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?<![\d.])([45]\d\d)(?:[ :-]|$)", re.MULTILINE)
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_MTA_SENDERS = ("mailer-daemon", "postmaster", "mail delivery", "mail-daemon", "mailerdaemon", "maildelivery")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status )?(notification|failure)|failure notice|returned mail|mail delivery failed|"
    r"delivery has failed|could not be delivered|nondeliverable|non-delivery", re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|autoreply|vacation|away from|"
    r"abwesenheitsnotiz|r[ée]ponse automatique|respuesta autom[áa]tica|risposta automatica|on leave)", re.IGNORECASE,
)
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-response", "x-mailautoreply", "x-vacation")
# 5.x.x codes that do not mean the address is dead: a full mailbox, a full system, a policy block.
_SOFT_PERMANENT = re.compile(r"^5\.(2\.2|2\.3|3\.\d+|4\.5|7\.\d+)$")
_SOFT_TEXT = re.compile(r"mailbox (is )?full|over ?quota|quota exceeded|insufficient (system )?storage|try again later", re.IGNORECASE)
_COMPLAINT_TYPES = ("abuse", "fraud", "other")
MAX_DIAGNOSTIC = 1000


@dataclass(frozen=True)
class Classification:
    """What an inbound message is. `method` says which reading decided it (dsn, arf, address,
    auto-reply, flufl, x-failed-recipients, none); `tokens` are our verified address tokens found in it."""

    kind: str
    recipient: str | None = None
    status: str | None = None
    diagnostic: str = ""
    method: str = "none"
    tokens: tuple[TokenRef, ...] = field(default=())

    def __post_init__(self) -> None:
        # What a bounce or a webhook says is stored: a NUL (which PostgreSQL's text cannot hold) or a lone
        # surrogate (which no encoding can) in it would fail the event, and stop the mailbox at it.
        make_xml_safe(self, ("recipient", "status", "diagnostic"))

    @property
    def recognised(self) -> bool:
        """A bounce, complaint or unsubscribe request: what the mailbox reader may move."""
        return self.kind in (HARD, SOFT, COMPLAINT, UNSUBSCRIBE)


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _text(value: object) -> str:
    return " ".join(str(value or "").split())


def _address(value: str | None) -> str | None:
    """The bare address of an `rfc822; user@host` field, or of a header."""
    if not value:
        return None
    text = _text(value)
    if ";" in text:
        text = text.split(";", 1)[1]
    found = parseaddr(text.strip())[1].strip().strip("<>")
    return found.lower() if "@" in found else None


def status_of(*texts: str | None) -> str | None:
    """The first enhanced status code (5.1.1) in `texts`, else a basic SMTP code (550)."""
    for text in texts:
        if text and (m := _ENHANCED.search(text)):
            return ".".join(m.groups())
    for text in texts:
        if text and (m := _BASIC.search(text)):
            return m.group(1)
    return None


def kind_for(status: str | None, diagnostic: str, permanent: bool) -> str:
    """hard or soft: 4xx is soft; 5xx hard unless it is a full mailbox, a full system or a policy block."""
    if status and status[0] == "4":
        return SOFT
    if status and status[0] == "5" and _SOFT_PERMANENT.match(status if "." in status else ""):
        return SOFT
    if _SOFT_TEXT.search(diagnostic):
        return SOFT
    if status and status[0] == "5":
        return HARD
    return HARD if permanent else SOFT


def _report(message: Message, report_type: str) -> bool:
    return message.get_content_type() == "multipart/report" and str(message.get_param("report-type") or "").lower() == report_type


def _dsn(message: Message) -> Classification | None:
    """RFC 3464: the first recipient whose Action is failed (else delayed, else any)."""
    blocks: list[Message] = []
    for part in message.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            payload = part.get_payload()
            if isinstance(payload, list):
                blocks += [b for b in payload if isinstance(b, Message)]
            elif isinstance(payload, str):  # unparsed: read the blocks ourselves
                blocks += [parse(chunk.encode("utf-8", "replace")) for chunk in re.split(r"\r?\n\r?\n", payload) if chunk.strip()]
    recipients = [b for b in blocks if b.get("Final-Recipient") or b.get("Original-Recipient")]
    if not recipients:
        return None
    chosen = next((b for b in recipients if _text(b.get("Action")).lower() == "failed"), recipients[0])
    action = _text(chosen.get("Action")).lower()
    recipient = _address(chosen.get("Original-Recipient")) or _address(chosen.get("Final-Recipient"))
    diagnostic = _text(chosen.get("Diagnostic-Code"))[:MAX_DIAGNOSTIC]
    status = status_of(_text(chosen.get("Status")), diagnostic)
    if status in (None, "5.0.0", "4.0.0"):  # generic: the diagnostic often says more
        status = status_of(diagnostic.split(";", 1)[-1]) or status
    if action == "failed":
        kind = kind_for(status, diagnostic, permanent=True)
    elif action == "delayed":
        return Classification(IGNORED, recipient, status, f"delivery delayed, the MTA keeps trying: {diagnostic}".strip(": "), "dsn")
    else:
        return Classification(IGNORED, recipient, status, f"DSN action {action or 'missing'}: nothing failed", "dsn")
    return Classification(kind, recipient, status, diagnostic or f"Action: failed; Status: {status}", "dsn")


def _arf(message: Message) -> Classification | None:
    """RFC 5965: the feedback report's type and the complained-about recipient."""
    report: Message | None = None
    original: Message | None = None
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                report = payload[0]
            elif isinstance(payload, str):
                report = parse(payload.encode("utf-8", "replace"))
        elif ctype in ("message/rfc822", "text/rfc822-headers") and original is None:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                original = payload[0]
            elif isinstance(payload, str):
                original = parse(payload.encode("utf-8", "replace"))
    if report is None:
        return None
    feedback = _text(report.get("Feedback-Type")).lower() or "abuse"
    recipient = _address(report.get("Original-Rcpt-To"))
    if recipient is None and original is not None:
        found = [a for _, a in getaddresses(original.get_all("To", [])) if "@" in a]
        recipient = found[0].lower() if found else None
    agent = _text(report.get("User-Agent"))
    if feedback not in _COMPLAINT_TYPES:
        return Classification(IGNORED, recipient, feedback, f"feedback report of type {feedback}, not a complaint", "arf")
    return Classification(COMPLAINT, recipient, feedback, f"feedback report ({feedback}) from {agent or 'unknown agent'}", "arf")


def is_auto_reply(message: Message) -> bool:
    """RFC 3834 Auto-Submitted (other than no), the common X-Autoreply family, Precedence, or a vacation subject."""
    submitted = _text(message.get("Auto-Submitted")).lower()
    if submitted and not submitted.startswith("no"):
        return True
    if any(message.get(h) is not None for h in _AUTO_HEADERS):
        return True
    if _text(message.get("Precedence")).lower() in ("auto_reply", "auto-reply"):
        return True
    return bool(_AUTO_SUBJECT.search(_text(message.get("Subject"))))


def from_mta(message: Message) -> bool:
    """The message says it is a delivery report: an MTA sender, a bounce subject, X-Failed-Recipients."""
    sender = _text(message.get("From")).lower()
    return (
        message.get("X-Failed-Recipients") is not None
        or any(name in sender for name in _MTA_SENDERS)
        or bool(_BOUNCE_SUBJECT.search(_text(message.get("Subject"))))
    )


def _body_text(message: Message, limit: int = 20_000) -> str:
    texts = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                texts.append(_decoded(payload[:limit], part.get_content_charset()))
    return "\n".join(texts)[:limit]


def _decoded(payload: bytes, charset: str | None) -> str:
    """`payload` as text in its declared charset; one Python does not know (a typo, a made-up name, a
    NUL in it) is read as UTF-8: the message is still classified, never stuck in the mailbox."""
    try:
        return payload.decode(charset or "utf-8", "replace")
    except (LookupError, ValueError):
        return payload.decode("utf-8", "replace")


def _diagnostic_near(body: str, recipient: str | None) -> str:
    """The line(s) of the body that say why, next to the recipient when it is named."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if _ENHANCED.search(line) or _BASIC.search(line):
            return " ".join(lines[i:i + 2])[:MAX_DIAGNOSTIC]
    if recipient:
        for i, line in enumerate(lines):
            if recipient in line.lower():
                return " ".join(lines[i:i + 3])[:MAX_DIAGNOSTIC]
    return ""


def _status_line(body: str) -> tuple[str, str, str] | None:
    """(recipient, status, line) of a text NDR: a line with a 4.x.x/5.x.x code and an address on it or
    just above it (Exchange's "Diagnostic information for administrators"). The quoted original is skipped."""
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if "copy of the message" in line.lower():
            break
        match = _ENHANCED.search(line)
        if match is None or match.group(1) == "2":
            continue
        for candidate in (line, *reversed(lines[max(0, i - 3):i])):
            address = _EMAIL.search(candidate)
            if address:
                return address.group().lower(), ".".join(match.groups()), " ".join(line.split())[:MAX_DIAGNOSTIC]
    return None


def _heuristic(message: Message) -> Classification | None:
    """Non-standard bounces: flufl.bounce's detectors (qmail, Exchange, Yahoo, ...) and X-Failed-Recipients."""
    try:
        temporary, permanent = all_failures(message)
    except Exception as e:  # a detector choking on odd input is not our failure to crash on
        log.warning("flufl.bounce failed on a message: %s", type(e).__name__)
        temporary, permanent = frozenset(), frozenset()
    body = _body_text(message)
    decode = lambda value: (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)).strip("<>").lower()  # noqa: E731
    if permanent or temporary:
        recipient = sorted(decode(a) for a in (permanent or temporary))[0]
        diagnostic = _diagnostic_near(body, recipient)
        status = status_of(diagnostic, body)
        kind = kind_for(status, diagnostic, permanent=bool(permanent))
        return Classification(kind, recipient, status, diagnostic, "flufl")
    if from_mta(message):
        found = _status_line(body)
        if found is not None:
            recipient, status, diagnostic = found
            return Classification(kind_for(status, diagnostic, permanent=True), recipient, status, diagnostic, "text")
    failed = _text(message.get("X-Failed-Recipients"))
    if failed:
        failed_to = _address(failed.split(",")[0])
        why = _diagnostic_near(body, failed_to)
        code = status_of(why, body)
        return Classification(kind_for(code, why, permanent=True), failed_to, code, why, "x-failed-recipients")
    return None


class Classifier:
    """Reads one inbound message. `tokens` (None: VERP and mailto unsubscribe off) finds our address
    tokens, so a bounce is tied to its delivery and a mail to unsubscribe+TOKEN@ unsubscribes."""

    def __init__(self, tokens: AddressTokens | None = None) -> None:
        self.tokens = tokens

    def classify(self, raw: bytes, *, envelope_recipient: str | None = None) -> Classification:
        message = parse(raw)
        addressed, found = self._tokens(raw, message, envelope_recipient)
        result = self._classify(message, addressed)
        return Classification(result.kind, result.recipient, result.status, result.diagnostic, result.method, tuple(found))

    def _tokens(self, raw: bytes, message: Message, envelope_recipient: str | None) -> tuple[list[TokenRef], list[TokenRef]]:
        """(tokens of the addresses the message was sent to: envelope, Delivered-To, To; those and any quoted in it)."""
        if self.tokens is None:
            return [], []
        addresses = [envelope_recipient or ""] + [
            a for h in ("Delivered-To", "X-Original-To", "Envelope-To", "To") for _, a in getaddresses(message.get_all(h, []))
        ]
        found: list[TokenRef] = []
        for address in addresses:
            ref = self.tokens.in_address(address) if address else None
            if ref is not None and ref not in found:
                found.append(ref)
        addressed = list(found)
        for ref in self.tokens.in_text(raw[:2_000_000].decode("latin-1")):
            if ref not in found:
                found.append(ref)
        return addressed, found

    def _classify(self, message: Message, addressed: list[TokenRef]) -> Classification:
        if _report(message, "delivery-status") or message.get_content_type() == "message/delivery-status":
            result = _dsn(message)
            if result is not None:
                return result
        if _report(message, "feedback-report"):
            result = _arf(message)
            if result is not None:
                return result
        addressed_unsubscribe = next((ref for ref in addressed if ref.kind == "u"), None)
        if addressed_unsubscribe is not None and not from_mta(message):
            sender = _address(message.get("From"))
            return Classification(UNSUBSCRIBE, sender, None, "mail to the List-Unsubscribe mailto address", "address")
        mta = from_mta(message)
        if is_auto_reply(message) and not mta:
            return Classification(IGNORED, _address(message.get("From")), None, "automatic reply (vacation or out of office)", "auto-reply")
        result = _heuristic(message)
        if result is not None:
            return result
        if is_auto_reply(message):
            return Classification(IGNORED, None, None, "automatic message from a mail system, no failed recipient in it", "auto-reply")
        return Classification(UNRECOGNISED, None, None, "not a bounce, complaint or unsubscribe request", "none")

"""Builds the exact RFC 5322 bytes of digest and confirmation emails.

multipart/alternative (text/plain first, text/html last), UTF-8, quoted-printable,
CRLF line ends, no line over 78 bytes except a header holding one long URL (never
over 998). What is the same for every recipient of a variant (subject, MIME parts,
the encoded lines without personal values) is built once; per recipient only the
headers and the lines holding their values are encoded.
"""

from __future__ import annotations

import binascii
import hashlib
import html
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr

from syndicate.config import EmailSettings, MailSettings, SiteSettings
from syndicate.content import Category
from syndicate.digest._render import VARIANT_CACHE, BoundedCache, EmailRenderer, LinkMaker, RenderedEmail, SlotText
from syndicate.digest._select import Digest
from syndicate.errors import ConfigError, SyndicateError
from syndicate.subscribers import Subscriber, envelope_of

log = logging.getLogger(__name__)

CRLF = b"\r\n"
MAX_LINE = 998
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
# An address in its envelope form for SMTPUTF8 (RFC 6531/6532): UTF-8 letters allowed too (no C1 controls).
_UTF8_ADDRESS = re.compile(
    "^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\u00a0-\U0010ffff-]+@[A-Za-z0-9\u00a0-\U0010ffff](?:[A-Za-z0-9.\u00a0-\U0010ffff-]*[A-Za-z0-9\u00a0-\U0010ffff])?$"
)
_PHRASE_SAFE = re.compile(r"^[A-Za-z0-9 !#$%&'*+/=?^_`{|}~-]+$")


class HeaderError(SyndicateError):
    """A value would break a message header (a CR or LF, a control character, a bad address)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} header: {problem}", hint="fix the value; it is never sent as is")
        self.field = field


@dataclass(frozen=True)
class DigestMessage:
    """One digest ready to hand to a mail backend: the envelope and the exact bytes."""

    subscriber_id: int
    recipient: str
    message_id: str
    since: datetime
    until: datetime
    variant_key: str
    data: bytes


# -- header values -----------------------------------------------------------------------
def checked(field: str, value: str) -> str:
    """`value` when it is safe in a header, else a HeaderError naming `field`."""
    bad = _FORBIDDEN.search(value)
    if bad:
        what = "CR or LF" if bad.group() in "\r\n" else f"control character {bad.group()!r}"
        raise HeaderError(field, f"contains a {what}")
    return value


def encode_text(field: str, value: str) -> str:
    """An unstructured header value (Subject), folded; non-ASCII (or `=?`) as RFC 2047 encoded words."""
    checked(field, value)
    if value.isascii() and "=?" not in value:
        return _fold(len(field) + 2, value.split(" "))
    return encoded_words(value)


def encoded_words(value: str) -> str:
    """RFC 2047 "B" encoded words of at most 39 UTF-8 bytes (64 characters) each, one per line.

    Words never split a character, so each decodes on its own.
    """
    whole = value.encode("utf-8")
    if len(whole) <= 39:
        return _b_word(whole)
    words: list[str] = []
    chunk: list[bytes] = []
    size = 0
    for char in value:
        raw = char.encode("utf-8")
        if size + len(raw) > 39:
            words.append(_b_word(b"".join(chunk)))
            chunk, size = [], 0
        chunk.append(raw)
        size += len(raw)
    if chunk:
        words.append(_b_word(b"".join(chunk)))
    return "\r\n ".join(words)


def _b_word(raw: bytes) -> str:
    return f"=?utf-8?b?{binascii.b2a_base64(raw, newline=False).decode('ascii')}?="


def _fold(used: int, words: Sequence[str]) -> str:
    """Words joined by spaces, folded (CRLF + space) before a word that would pass column 78."""
    out, column = words[0], used + len(words[0])
    for word in words[1:]:
        if word and column + 1 + len(word) > 78:
            out += "\r\n " + word
            column = 1 + len(word)
        else:
            out += " " + word
            column += 1 + len(word)
    return out


def encode_address(field: str, name: str | None, address: str, *, utf8: bool = False) -> str:
    """`"Name" <address>` with the name quoted, or RFC 2047 encoded when it is not plain ASCII.

    `address` is in its envelope form (syndicate.subscribers' Address.envelope): ASCII user@domain,
    or with `utf8` (a recipient) also a UTF-8 one, which only an SMTPUTF8 relay carries (RFC 6532)."""
    checked(field, address)
    if not (_ADDRESS.match(address) if address.isascii() else utf8 and _UTF8_ADDRESS.match(address)):
        raise HeaderError(field, f"not an address this server can send to: {address!r} (user@domain)")
    name = " ".join(checked(field, name or "").split())
    if not name:
        return address
    if len(name) > 60 or not name.isascii() or "=?" in name:
        phrase = encoded_words(name)  # folds; a quoted string would not
    elif _PHRASE_SAFE.match(name):
        phrase = name
    else:
        phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    last = phrase.rsplit("\r\n", 1)[-1]
    fold = "\r\n " if len(field) + 2 + len(last) + len(address) + 3 > 78 else " "
    return f"{phrase}{fold}<{address}>"


def configured_address(field: str, key: str, value: str) -> str:
    """An address from the config (`Name <user@domain>`), encoded; ConfigError naming the key."""
    try:
        name, address = parseaddr(checked(field, value))
        return encode_address(field, name, address)
    except HeaderError as e:
        raise ConfigError([f"{key}: {e}"]) from None


def header_line(field: str, value: str, *, utf8: bool = False) -> bytes:
    """The header's bytes: ASCII, or with `utf8` (a To: holding an SMTPUTF8 address) UTF-8."""
    line = f"{field}: {value}".encode("utf-8" if utf8 else "ascii")
    if any(len(part) > MAX_LINE for part in line.split(CRLF)):
        raise HeaderError(field, f"a line would be longer than {MAX_LINE} bytes")
    return line + CRLF


def message_id(digest: Digest, domain: str) -> str:
    """The same for a resend of the same digest: subscriber, range and articles."""
    h = hashlib.sha256(
        "|".join(
            [
                str(digest.subscriber.id),
                digest.since.astimezone(UTC).isoformat(),
                digest.until.astimezone(UTC).isoformat(),
                ",".join(a.id for a in digest.articles),
            ]
        ).encode()
    ).hexdigest()[:24]
    return f"<digest.{digest.subscriber.id}.{h}@{domain}>"


# -- bodies ------------------------------------------------------------------------------
def qp_encode(text: str) -> bytes:
    """Quoted-printable UTF-8, soft lines of at most 76 bytes, CRLF line ends."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", CRLF)


@dataclass(frozen=True)
class SlotLine:
    """A line still holding slots, and the line end that follows it (none for a part's last line)."""

    text: SlotText
    end: bytes
    variant: bool = False  # holds a per-variant slot (title, preheader): filled once per variant


Chunk = bytes | SlotLine


SECTIONS_LINE = ("", "sections", "")  # the pieces of the frame's line that the sections replace
_VARIANT_VALUES = ("title", "preheader")  # the frame's slots filled once per variant (the sections besides)


def encode_lines(text: SlotText, variant_slots: Sequence[str] = ()) -> list[Chunk]:
    """`text` encoded line by line: runs of lines without slots become one bytes chunk, runs of
    lines with slots one SlotLine (encoded together once filled); the sections' line stays alone.
    A SlotLine holding one of `variant_slots` is marked (its `variant`)."""
    lines = text.lines()
    chunks: list[Chunk] = []
    static: list[bytes] = []
    slotted: list[SlotText] = []
    for i, line in enumerate(lines):
        end = CRLF if i < len(lines) - 1 else b""
        if line.is_static:
            if slotted:
                chunks.append(_slot_line(slotted, CRLF, variant_slots))
                slotted = []
            static.append(qp_encode(line.pieces[0]) + end)
            continue
        if static:
            chunks.append(b"".join(static))
            static = []
        if line.pieces == SECTIONS_LINE:
            if slotted:
                chunks.append(_slot_line(slotted, CRLF, variant_slots))
                slotted = []
            chunks.append(SlotLine(line, end))
        else:
            slotted.append(line)
    if slotted:
        chunks.append(_slot_line(slotted, b"", variant_slots))
    if static:
        chunks.append(b"".join(static))
    return chunks


def _slot_line(lines: Sequence[SlotText], end: bytes, variant_slots: Sequence[str]) -> SlotLine:
    text = _joined(lines)
    return SlotLine(text, end, variant=any(name in variant_slots for name in text.pieces[1::2]))


def _joined(lines: Sequence[SlotText]) -> SlotText:
    """Consecutive lines as one text (joined by "\n": qp_encode ends each with CRLF)."""
    pieces = list(lines[0].pieces)
    for line in lines[1:]:
        pieces[-1] += "\n" + line.pieces[0]
        pieces += line.pieces[1:]
    return SlotText(tuple(pieces))


def encode_block(text: str) -> bytes:
    """A section (text ending with a line end), every line encoded and ended with CRLF."""
    return b"".join([qp_encode(line) + CRLF for line in text.split("\n")[:-1]])


def fill_chunks(chunks: Sequence[Chunk], values: Mapping[str, str]) -> bytes:
    return b"".join([c if isinstance(c, bytes) else qp_encode(c.text.fill(values)) + c.end for c in chunks])


def variant_chunks(frame: Sequence[Chunk], values: Mapping[str, str], sections: Sequence[bytes]) -> tuple[Chunk, ...]:
    """The run's encoded frame with this variant's values (title, preheader) filled and its encoded sections in place."""
    out: list[Chunk] = []
    for chunk in frame:
        if isinstance(chunk, bytes):
            out.append(chunk)
        elif chunk.text.pieces == SECTIONS_LINE:
            out += [*sections, chunk.end]
        elif chunk.variant:
            line = chunk.text.partial(values)
            out.append(qp_encode(line.pieces[0]) + chunk.end if line.is_static else SlotLine(line, chunk.end))
        else:
            out.append(chunk)
    return tuple(out)


@dataclass(frozen=True)
class EncodedVariant:
    """A variant's subject header and its parts' bodies: shared encoded chunks, slot lines left per recipient."""

    subject: bytes
    text: tuple[Chunk, ...]
    html: tuple[Chunk, ...]


_PART_HEAD = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'


def _mime_frame(boundary: str) -> tuple[bytes, bytes, bytes, bytes]:
    """Content-Type header (+ blank line), text part head, html part head, closing delimiter."""
    return (
        header_line("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"') + CRLF,
        f"--{boundary}\r\n{_PART_HEAD.format('plain')}".encode(),
        f"\r\n--{boundary}\r\n{_PART_HEAD.format('html')}".encode(),
        f"\r\n--{boundary}--\r\n".encode(),
    )


class MessageBuilder:
    """Builds this run's messages: headers fixed for the run once, each variant's body once."""

    def __init__(
        self,
        mail: MailSettings,
        email: EmailSettings,
        site: SiteSettings,
        renderer: EmailRenderer,
        links: LinkMaker,
        categories: Sequence[Category],
        now: datetime,
        *,
        variant_cache: int = VARIANT_CACHE,
        mailto_for: Callable[[int], str | None] | None = None,
    ) -> None:
        """[mail], [email] and [site] name the sender, the list and its links. `variant_cache`: encoded variants kept (least recently used forgotten; met again, re-encoded).
        `mailto_for(subscriber id)`: that subscriber's own List-Unsubscribe mailto address
        (`[bounces] unsubscribe_address`, #13), instead of the one `[email] unsubscribe_mailto`."""
        if now.tzinfo is None:
            raise ValueError("MessageBuilder: `now` must be timezone-aware")
        self.email = email
        self.site = site
        self.renderer = renderer
        self.links = links
        self.categories = tuple(categories)
        self.now = now
        self.domain = checked("Message-ID", mail.domain)
        self._mailto = self._unsubscribe_mailto(email.unsubscribe_mailto)
        self._mailto_for = mailto_for
        self._run_headers = b"".join(
            [
                header_line("From", configured_address("From", "[mail] from", mail.from_)),
                header_line("Date", format_datetime(now)),
            ]
        )
        list_headers = [header_line("List-Id", self._list_id())]
        if mail.reply_to:
            list_headers.insert(0, header_line("Reply-To", configured_address("Reply-To", "[mail] reply_to", mail.reply_to)))
        self._list_headers = b"".join(list_headers)
        self._mime_headers = header_line("List-Unsubscribe-Post", "List-Unsubscribe=One-Click") + header_line("MIME-Version", "1.0")
        # One MIME boundary for the run's digests: "=_" never occurs in quoted-printable text (RFC 2045, 6.7).
        boundary = "=_syndicate_" + hashlib.sha256(f"{now.isoformat()}|{self.domain}".encode()).hexdigest()[:20]
        self._content_type, self._text_head, self._html_head, self._tail = _mime_frame(boundary)
        self._variants: BoundedCache[str, EncodedVariant] = BoundedCache(variant_cache)
        self._pieces: dict[tuple[object, ...], tuple[bytes, bytes]] = {}
        self._frame: tuple[list[Chunk], list[Chunk]] | None = None
        self._warned_http = False

    def digest_message(self, digest: Digest, *, planned_id: str | None = None) -> DigestMessage:
        """The digest's exact bytes for its subscriber; `planned_id` is the Message-ID the outbox
        recorded for it (message_id() of the digest as planned), else it is computed."""
        subscriber = digest.subscriber
        encoded = self._variants.get(digest.variant_key)
        if encoded is None:
            encoded = self._variants.put(digest.variant_key, self._encode_variant(digest))
        values = self.renderer.digest_values(subscriber, self.links, self.categories, now=self.now, issue=digest.issue)
        unsubscribe = checked("List-Unsubscribe", values.text["unsubscribe_url"])
        if not self._warned_http and not unsubscribe.startswith("https://"):
            self._warned_http = True
            origin = "/".join(unsubscribe.split("/", 3)[:3])  # scheme and host only: the path carries a token
            log.warning("List-Unsubscribe URL is not https (%s): RFC 8058 one-click needs https; set [site] base_url", origin)
        checked("preferences URL", values.text["preferences_url"])
        mid = planned_id or message_id(digest, self.domain)
        recipient = envelope_of(subscriber.email)
        own = self._mailto_for(subscriber.id) if self._mailto_for is not None else None
        mailto = f"mailto:{checked('List-Unsubscribe', own)}?subject=unsubscribe" if own else self._mailto
        unsubscribe_value = f"<{unsubscribe}>" + (f",\r\n <{mailto}>" if mailto else "")
        parts = [
            self._run_headers,
            header_line("To", encode_address("To", subscriber.name, recipient, utf8=True), utf8=True),
            encoded.subject,
            header_line("Message-ID", mid),
            self._list_headers,
            header_line("List-Unsubscribe", unsubscribe_value),
            self._mime_headers,
            self._content_type,
            self._text_head,
            fill_chunks(encoded.text, values.text),
            self._html_head,
            fill_chunks(encoded.html, values.html),
            self._tail,
        ]
        return DigestMessage(
            subscriber_id=subscriber.id,
            recipient=recipient,
            message_id=mid,
            since=digest.since,
            until=digest.until,
            variant_key=digest.variant_key,
            data=b"".join(parts),
        )

    def _encode_variant(self, digest: Digest) -> EncodedVariant:
        """Frame encoded once per run, each section piece once per run; a variant only points at them."""
        if self._frame is None:
            frame = self.renderer.frame()
            self._frame = (encode_lines(frame.text, _VARIANT_VALUES), encode_lines(frame.html, _VARIANT_VALUES))
        parts = self.renderer.digest_parts(digest)
        preheader = self.renderer.preheader(digest)
        sections = []
        for piece in (piece for section in parts.sections for piece in section.pieces):
            if piece.key not in self._pieces:
                self._pieces[piece.key] = (encode_block(piece.text), encode_block(piece.html))
            sections.append(self._pieces[piece.key])
        return EncodedVariant(
            subject=header_line("Subject", encode_text("Subject", parts.subject)),
            text=variant_chunks(self._frame[0], {"title": parts.subject, "preheader": preheader}, [t for t, _ in sections]),
            html=variant_chunks(self._frame[1], {"title": html.escape(parts.subject), "preheader": html.escape(preheader)},
                                [h for _, h in sections]),
        )

    def campaign_message(self, subscriber: Subscriber, rendered: RenderedEmail, message_id: str) -> bytes:
        """A campaign's exact bytes for `subscriber`: the digests' headers (From, List-Id, one-click
        List-Unsubscribe with their signed link) around `rendered`."""
        unsubscribe = checked("List-Unsubscribe", self.links.unsubscribe_url(subscriber))
        unsubscribe_value = f"<{unsubscribe}>" + (f",\r\n <{self._mailto}>" if self._mailto else "")
        boundary = "=_syndicate_campaign_" + hashlib.sha256(message_id.encode()).hexdigest()[:16]
        return b"".join([
            self._run_headers,
            header_line("To", encode_address("To", subscriber.name, subscriber.email)),
            header_line("Subject", encode_text("Subject", rendered.subject)),
            header_line("Message-ID", checked("Message-ID", message_id)),
            self._list_headers,
            header_line("List-Unsubscribe", unsubscribe_value),
            self._mime_headers,
            *_static_body(rendered, boundary),
        ])

    def confirmation(self, email: str, name: str | None, categories: Sequence[Category], confirm_url: str) -> bytes:
        """The double opt-in email for `email`, asking them to open `confirm_url`."""
        checked("confirm URL", confirm_url)
        rendered = self.renderer.render_confirmation(email, name, categories, confirm_url)
        digest_of = hashlib.sha256(f"{email}|{confirm_url}".encode()).hexdigest()[:24]
        return b"".join(
            [
                self._run_headers,
                header_line("To", encode_address("To", name, envelope_of(email), utf8=True), utf8=True),
                header_line("Subject", encode_text("Subject", rendered.subject)),
                header_line("Message-ID", f"<confirm.{digest_of}@{self.domain}>"),
                header_line("MIME-Version", "1.0"),
                *_static_body(rendered, f"=_syndicate_confirm_{digest_of}"),
            ]
        )

    def notice(self, email: str, name: str | None, template: str, subject: str, values: Mapping[str, str]) -> bytes:
        """A one-off email to `email` (welcome, already subscribed) from `template`."""
        for label, value in values.items():
            if label.endswith("_url"):
                checked(label, value)
        rendered = self.renderer.render_notice(template, subject, values)
        digest_of = hashlib.sha256(f"{template}|{email}|{self.now.isoformat()}".encode()).hexdigest()[:24]
        return b"".join(
            [
                self._run_headers,
                header_line("To", encode_address("To", name, email)),
                header_line("Subject", encode_text("Subject", rendered.subject)),
                header_line("Message-ID", f"<{template}.{digest_of}@{self.domain}>"),
                header_line("MIME-Version", "1.0"),
                *_static_body(rendered, f"=_syndicate_{template}_{digest_of}"),
            ]
        )

    def _list_id(self) -> str:
        configured = self.email.list_id
        if configured:
            value = checked("List-Id", configured)
            return value if "<" in value else f"<{value}>"
        title = self.site.title
        label = f"<digest.{self.domain}>"
        return f"{encode_text('List-Id', title)} {label}" if title else label

    @staticmethod
    def _unsubscribe_mailto(address: str | None) -> str | None:
        if not address:
            return None
        if not _ADDRESS.match(address):
            raise ConfigError([f"[email] unsubscribe_mailto: expected an address such as unsubscribe@example.com, got {address!r}"])
        return f"mailto:{address}?subject=unsubscribe"


def _static_body(rendered: RenderedEmail, boundary: str) -> list[bytes]:
    content_type, text_head, html_head, tail = _mime_frame(boundary)
    return [content_type, text_head, qp_encode(rendered.text), html_head, qp_encode(rendered.html), tail]


def build_confirmation(
    mail: MailSettings,
    email_settings: EmailSettings,
    site: SiteSettings,
    renderer: EmailRenderer,
    *,
    email: str,
    name: str | None,
    categories: Sequence[Category],
    confirm_url: str,
    now: datetime,
) -> bytes:
    """The double opt-in email (text + HTML) with the confirm link, as exact bytes."""
    builder = MessageBuilder(mail, email_settings, site, renderer, _NoLinks(), (), now)
    return builder.confirmation(email, name, categories, confirm_url)


def build_notice(mail: MailSettings, email_settings: EmailSettings, site: SiteSettings, renderer: EmailRenderer, *,
                 email: str, name: str | None, template: str, subject: str, values: Mapping[str, str],
                 now: datetime) -> bytes:
    """A one-off email (welcome, already subscribed) as exact bytes."""
    builder = MessageBuilder(mail, email_settings, site, renderer, _NoLinks(), (), now)
    return builder.notice(email, name, template, subject, values)


class _NoLinks:
    """A confirmation has no unsubscribe or preferences links: the address is not subscribed yet."""

    def unsubscribe_url(self, subscriber: object) -> str:
        raise AssertionError("confirmation emails carry no unsubscribe link")

    def preferences_url(self, subscriber: object) -> str:
        raise AssertionError("confirmation emails carry no preferences link")

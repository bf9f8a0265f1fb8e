"""Digest: what each subscriber gets (selection), rendered with Jinja2 and inlined CSS, as exact MIME bytes."""

from syndicate.digest._message import MessageBuilder, build_confirmation, build_notice, message_id
from syndicate.digest._render import EmailRenderer, LinkMaker, RenderedEmail
from syndicate.digest._select import Digest, DigestSection, Selector, Timeline, select_digest, variant_key

__all__ = [
    "Digest", "DigestSection", "EmailRenderer", "LinkMaker", "MessageBuilder", "RenderedEmail", "Selector",
    "Timeline", "build_confirmation", "build_notice", "message_id", "select_digest", "variant_key",
]

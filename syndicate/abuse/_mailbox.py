"""The mailbox an address delivers to, for counting: plus-tags dropped, and dots where the domain ignores them."""

from __future__ import annotations

# Domains known to deliver "a.b.c@" to "abc@".
DOTS_IGNORED = frozenset({"gmail.com", "googlemail.com"})
SAME_MAILBOXES = {"googlemail.com": "gmail.com"}


def mailbox_key(email: str) -> tuple[str, str]:
    """(mailbox, domain) of a valid address, lower-cased. The plus-tag is dropped on every domain: most
    providers deliver `name+tag@` to `name@`, and counting two real mailboxes as one only makes the
    limit a little stricter for them, while not dropping it lets one victim be mailed without limit."""
    local, _, domain = email.strip().lower().rpartition("@")
    domain = SAME_MAILBOXES.get(domain.rstrip("."), domain.rstrip("."))
    local = local.split("+", 1)[0] or local
    if domain in DOTS_IGNORED:
        local = local.replace(".", "") or local
    return f"{local}@{domain}", domain

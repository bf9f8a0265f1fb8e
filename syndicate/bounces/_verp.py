"""Short signed tokens in addresses: the envelope sender of each delivery (VERP) and the mailto unsubscribe address."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# d: a digest delivery (its id); s: a confirmation email (the subscriber's id); u: unsubscribe (subscriber id).
KINDS = ("d", "s", "u")
_MAC_CHARS = 10  # base32, 50 bits: a forger has to guess per address, and each guess costs them a mail
_TOKEN = re.compile(r"\b(?:bounce|unsubscribe)?\+?([dsu])(\d{1,12})-([a-z2-7]{10})(?=@)", re.IGNORECASE)


@dataclass(frozen=True)
class TokenRef:
    """What a verified token names: `kind` (d, s or u) and the delivery or subscriber id."""

    kind: str
    id: int

    @property
    def delivery_id(self) -> int | None:
        return self.id if self.kind == "d" else None

    @property
    def subscriber_id(self) -> int | None:
        return self.id if self.kind in ("s", "u") else None


def _template(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if value.count("{token}") != 1 or "@" not in value.split("{token}", 1)[1]:
        raise ValueError(f"{what}: expected a local part holding {{token}} then @domain, got {value!r}")
    return value


class AddressTokens:
    """Makes and checks the tokens of bounce+TOKEN@ and unsubscribe+TOKEN@ addresses.

    Tokens are lower case (some MTAs fold local parts) and signed with HMAC-SHA256 under the link
    secret (`previous` secrets still accepted, so old bounces after a rotation are still tied)."""

    def __init__(self, secret: str, previous: Sequence[str] = (), *, return_path: str | None = None,
                 unsubscribe: str | None = None) -> None:
        if not secret:
            raise ValueError("AddressTokens needs a non-empty secret")
        self.return_path = _template(return_path, "[bounces] return_path")
        self.unsubscribe = _template(unsubscribe, "[bounces] unsubscribe_address")
        self._keys = [hashlib.sha256(b"syndicate.address-token|" + s.encode()).digest() for s in (secret, *previous) if s]

    def _mac(self, key: bytes, kind: str, number: int) -> str:
        digest = hmac.new(key, f"{kind}{number}".encode(), hashlib.sha256).digest()
        return base64.b32encode(digest).decode("ascii").lower()[:_MAC_CHARS]

    def token(self, kind: str, number: int) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown address token kind {kind!r}")
        return f"{kind}{int(number)}-{self._mac(self._keys[0], kind, int(number))}"

    def check(self, token: str) -> TokenRef | None:
        """The TokenRef of a genuine token (any accepted secret), else None."""
        match = re.fullmatch(r"([dsu])(\d{1,12})-([a-z2-7]{10})", token.strip().lower())
        if match is None:
            return None
        kind, number, mac = match.group(1), int(match.group(2)), match.group(3)
        if any(hmac.compare_digest(self._mac(key, kind, number), mac) for key in self._keys):
            return TokenRef(kind, number)
        return None

    def envelope_sender(self, kind: str, number: int) -> str | None:
        """bounce+TOKEN@domain for a delivery (d) or a confirmation (s); None when VERP is off."""
        return self.return_path.replace("{token}", self.token(kind, number)) if self.return_path else None

    def unsubscribe_address(self, subscriber_id: int) -> str | None:
        return self.unsubscribe.replace("{token}", self.token("u", subscriber_id)) if self.unsubscribe else None

    def in_address(self, address: str) -> TokenRef | None:
        """The verified token of a bounce+/unsubscribe+ address (the part after the first +)."""
        local = address.strip().strip("<>").rsplit("@", 1)[0]
        return self.check(local.split("+", 1)[1]) if "+" in local else None

    def in_text(self, text: str) -> Iterator[TokenRef]:
        """Every verified token of an address found in `text` (a bounce quotes our headers)."""
        seen: set[TokenRef] = set()
        for match in _TOKEN.finditer(text):
            ref = self.check(f"{match.group(1)}{match.group(2)}-{match.group(3)}")
            if ref is not None and ref not in seen:
                seen.add(ref)
                yield ref

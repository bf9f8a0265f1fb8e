"""The email address: validated once where it enters, carried as an Address (or the normalised text it made).

An address with a non-ASCII domain and an ASCII local part (u@münchen.de) travels with its
domain IDNA-encoded (u@xn--mnchen-3ya.de), which every relay carries. One with a non-ASCII local
part (jörg@example.org) can only travel over SMTPUTF8 (RFC 6531, with UTF-8 headers, RFC 6532):
AddressRules asks the mail backend whether it carries those when one enters, and refuses the
address there, so it is never stored to fail at every send.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import idna
from email_validator import EmailNotValidError, validate_email

from syndicate.errors import UsageError

log = logging.getLogger(__name__)

MAX_LOCAL_PART = 64  # octets, RFC 5321 4.5.3.1.1 (RFC 6531 counts the UTF-8 octets); email-validator
# checks the whole address's 254 but lets a longer local part through
CHECK_AGAIN_AFTER = 60.0  # seconds before a backend that could not answer is asked again


class InvalidAddressError(UsageError):
    """An address that cannot be accepted; `field` names the input it came from."""

    def __init__(self, field_name: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{field_name}: {message}", hint=hint)
        self.field = field_name
        self.reason = message


@functools.lru_cache(maxsize=4096)
def _ascii_domain(domain: str) -> str:
    """The IDNA (A-label) form of an already normalised domain, as email-validator computes it."""
    return domain if domain.isascii() else idna.encode(domain, uts46=False).decode("ascii")


@dataclass(frozen=True)
class Address:
    """A validated address. `text` is its normalised form, as stored and shown (NFC, the domain in
    Unicode and lower case); `key` the unique lower-case key the store looks it up by."""

    local: str
    domain: str

    @property
    def text(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def key(self) -> str:
        return self.text.lower()

    @property
    def needs_smtputf8(self) -> bool:
        """Only SMTPUTF8 can carry it: its local part is not ASCII."""
        return not self.local.isascii()

    @property
    def envelope(self) -> str:
        """The form for MAIL FROM / RCPT TO and the To: header: the domain IDNA-encoded when the local
        part is ASCII; otherwise the UTF-8 text, for a relay that offers SMTPUTF8."""
        return self.text if self.needs_smtputf8 else f"{self.local}@{_ascii_domain(self.domain)}"

    @classmethod
    def stored(cls, text: str) -> Address:
        """The Address whose `text` this is (as the store keeps it): not validated again."""
        local, _, domain = text.rpartition("@")
        return cls(local, domain)


def envelope_of(text: str) -> str:
    """The envelope form of a stored address's normalised text (what Address.stored(text).envelope gives)."""
    return text if text.isascii() else Address.stored(text).envelope


def parse_address(raw: str, *, field: str = "email", utf8_local_parts: bool = True) -> Address:
    """The Address `raw` names, or InvalidAddressError saying why not. `utf8_local_parts`: whether
    an address whose part before the @ is not ASCII can be delivered (see AddressRules)."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidAddressError(field, "is missing")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in raw):
        raise InvalidAddressError(field, f"contains a line break or control character: {raw!r}")
    given = raw.strip()
    try:
        checked = validate_email(given, check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidAddressError(field, f"{given!r} is not a valid address: {e}") from None
    address = Address(checked.local_part, checked.domain)
    if len(address.local.encode("utf-8")) > MAX_LOCAL_PART:
        raise InvalidAddressError(
            field, f"{given!r}: the part before the @ is {len(address.local.encode('utf-8'))} bytes long "
            f"(at most {MAX_LOCAL_PART})",
        )
    if address.needs_smtputf8 and not utf8_local_parts:
        raise _not_carried(field, given)
    return address


def _not_carried(field: str, given: str) -> InvalidAddressError:
    return InvalidAddressError(
        field, f"{given!r}: our mail server cannot deliver to an address with non-ASCII characters before the @",
        hint="use another address (one with only ASCII letters, digits and .!#$%&'*+/=?^_`{|}~- before the @)",
    )


class AddressRules:
    """How addresses are checked where they enter (sign-up, API, CLI, CSV import).

    `carries_utf8` answers whether the mail backend can deliver to a non-ASCII local part
    (SMTPUTF8); it is asked only when such an address comes. An error from it (the relay cannot be
    reached) refuses the address as "try again later", and is remembered for CHECK_AGAIN_AFTER
    seconds so that a file of such addresses does not knock on a dead relay once a row.
    """

    def __init__(self, carries_utf8: Callable[[], bool] | None = None) -> None:
        self._carries_utf8 = carries_utf8 or (lambda: True)
        self._lock = threading.Lock()
        self._failed_at: float | None = None

    def parse(self, raw: str, *, field: str = "email") -> Address:
        address = parse_address(raw, field=field)
        if address.needs_smtputf8 and not self._utf8(field, raw):
            raise _not_carried(field, raw.strip())
        return address

    def _utf8(self, field: str, raw: str) -> bool:
        with self._lock:
            if self._failed_at is not None and time.monotonic() - self._failed_at < CHECK_AGAIN_AFTER:
                raise self._unknown(field, raw)
            try:
                carries = self._carries_utf8()
            except Exception as e:  # the backend could not tell (a relay down): the address waits, not fails later
                self._failed_at = time.monotonic()
                log.warning("cannot tell whether the mail backend carries SMTPUTF8 addresses: %s: %s", type(e).__name__, e)
                raise self._unknown(field, raw) from None
            self._failed_at = None
            return carries

    @staticmethod
    def _unknown(field: str, raw: str) -> InvalidAddressError:
        """What the person typing it reads (the reason, from our side, goes to the log)."""
        return InvalidAddressError(
            field, f"{raw.strip()!r}: cannot check now whether our mail server can deliver to an address with "
            "non-ASCII characters before the @; please try again later",
        )

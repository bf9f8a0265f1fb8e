"""Signed, expiring, purpose-bound tokens for the confirm, unsubscribe and preferences links."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from itsdangerous import BadData, BadSignature, SignatureExpired, Signer, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.url_safe import URLSafeSerializerMixin

from syndicate.config import MIN_SECRET_BYTES, LinkSettings, read_secret
from syndicate.errors import SyndicateError

# "csrf" signs a random form nonce (not a subscriber id): the web forms' double-submit token.
PURPOSES = ("confirm", "unsubscribe", "preferences", "csrf")
NEVER_EXPIRES = frozenset({"unsubscribe"})  # an opt-out link must keep working in every old email
_KEY_ID_BYTES = 4


class InvalidLinkError(SyndicateError):
    """A link token was refused. `reason` is one of: malformed, forged, expired, wrong-purpose,
    unknown-secret. `subscriber_id` is set only when it is trustworthy (an expired but genuine token)."""

    exit_code = 2

    def __init__(self, reason: str, message: str, *, subscriber_id: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        self.subscriber_id = subscriber_id


class _ClockSigner(TimestampSigner):
    """A TimestampSigner whose clock is given (seconds since the epoch), so `now` can be passed in."""

    def __init__(self, *args: Any, clock: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(time.time() if self._clock is None else self._clock)


class _Serializer(URLSafeTimedSerializer):
    """URLSafeTimedSerializer whose tokens carry their JSON payload uncompressed.

    itsdangerous compresses every payload with zlib and keeps the result when it is shorter. A
    link's payload is 30-40 bytes (purpose, id, key id), which zlib almost never shortens, and each
    zlib.compress sets up ~256 kB of deflate state: 70-90 us a token in a sending process, whose
    caches the messages keep cold (two links a digest). Its loads() reads an uncompressed payload as
    it reads its own (only a payload marked "." is decompressed), so every token verifies the same."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signer = super().make_signer(self.salt)

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(super(URLSafeSerializerMixin, self).dump_payload(obj))

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        """The one signer of this serializer's own salt (itsdangerous makes one for every token)."""
        return self._signer if salt is None or salt == self.salt else super().make_signer(salt)


def key_id(secret: str) -> str:
    """A short public fingerprint of a secret, so a token signed with a retired secret is told apart from a forgery."""
    return hmac.new(secret.encode(), b"syndicate link key id", hashlib.sha256).hexdigest()[: 2 * _KEY_ID_BYTES]


class LinkSigner:
    """Makes and checks link tokens. `secret` signs; `previous_secrets` are still accepted.

    `max_ages` gives the default lifetime in seconds per purpose (unsubscribe never expires).
    """

    def __init__(
        self,
        secret: str,
        previous_secrets: Sequence[str] = (),
        *,
        max_ages: Mapping[str, int | None] | None = None,
    ) -> None:
        if not secret:
            raise ValueError("LinkSigner needs a non-empty secret")
        self._secrets = [s for s in previous_secrets if s and s != secret] + [secret]  # newest last, as itsdangerous wants
        self._key_id = key_id(secret)
        self._known_ids = frozenset(key_id(s) for s in self._secrets)
        self._max_ages = dict(max_ages or {})
        self._at_clock: dict[tuple[str, float | None], URLSafeTimedSerializer] = {}
        self._real_time = {p: self._serializer(p, None) for p in PURPOSES}  # checks against the real clock

    def _serializer(self, purpose: str, now: datetime | None) -> URLSafeTimedSerializer:
        if now is None and hasattr(self, "_real_time"):
            return self._real_time[purpose]
        clock = None if now is None else now.timestamp()
        key = (purpose, clock)
        found = self._at_clock.get(key)  # a run signs every link with its start time: one serializer a run
        if found is None:
            if len(self._at_clock) >= 64:
                self._at_clock.clear()
            found = self._at_clock[key] = _Serializer(
                self._secrets,
                salt=f"syndicate.link.{purpose}",
                signer=_ClockSigner,
                signer_kwargs={"clock": clock, "digest_method": hashlib.sha256},
            )
        return found

    def make(self, purpose: str, subscriber_id: int, *, now: datetime | None = None) -> str:
        """A URL-safe token for `purpose` and subscriber `subscriber_id`, signed with the current secret."""
        _check_purpose(purpose)
        token = self._serializer(purpose, now).dumps([purpose, int(subscriber_id), self._key_id])
        return token if isinstance(token, str) else token.decode("ascii")

    def check(self, purpose: str, token: str, max_age: int | None = None, *, now: datetime | None = None) -> int:
        """The subscriber id of a genuine, unexpired `purpose` token, else InvalidLinkError."""
        _check_purpose(purpose)
        if purpose in NEVER_EXPIRES:
            max_age = None
        elif max_age is None:
            max_age = self._max_ages.get(purpose)
        serializer = self._serializer(purpose, now)
        try:
            payload = serializer.loads(token, max_age=max_age)
        except SignatureExpired as e:
            subscriber_id = _subscriber_of(serializer, e.payload)
            raise InvalidLinkError(
                "expired", f"this {purpose} link has expired", subscriber_id=subscriber_id,
                hint="ask for a new link",
            ) from None
        except BadSignature:
            raise self._diagnose(purpose, token) from None
        except BadData:
            raise _malformed(purpose) from None
        if not _well_formed(payload) or payload[0] != purpose:
            raise _malformed(purpose)
        return int(payload[1])

    def _diagnose(self, purpose: str, token: str) -> InvalidLinkError:
        """Why a token with a bad signature was refused. The unverified payload only picks the message."""
        try:
            _, claimed = self._serializer(purpose, None).loads_unsafe(token)
        except Exception:  # loads_unsafe swallows most errors; anything else is junk input
            claimed = None
        if not _well_formed(claimed):
            return _malformed(purpose)
        claimed_purpose, _, claimed_key = claimed
        if claimed_key not in self._known_ids:
            return InvalidLinkError(
                "unknown-secret",
                f"this {purpose} link was signed with a secret that is no longer accepted",
                hint="the signing secret was rotated out; ask for a new link",
            )
        if claimed_purpose != purpose and claimed_purpose in PURPOSES:
            try:
                self._serializer(claimed_purpose, None).loads(token)
            except BadData:
                pass
            else:
                return InvalidLinkError(
                    "wrong-purpose", f"this link is for {claimed_purpose}, not for {purpose}",
                )
        return InvalidLinkError("forged", f"this {purpose} link is forged or damaged (bad signature)")


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r} (expected one of {', '.join(PURPOSES)})")


def _well_formed(payload: object) -> bool:
    return (
        isinstance(payload, list) and len(payload) == 3 and isinstance(payload[0], str)
        and isinstance(payload[1], int) and not isinstance(payload[1], bool) and isinstance(payload[2], str)
    )


def _malformed(purpose: str) -> InvalidLinkError:
    return InvalidLinkError("malformed", f"this {purpose} link is not one syndicate made (malformed token)")


def _subscriber_of(serializer: URLSafeTimedSerializer, raw: Any) -> int | None:
    try:
        payload = serializer.load_payload(raw)
    except BadData:
        return None
    return int(payload[1]) if _well_formed(payload) else None


def signer_from_settings(links: LinkSettings, environ: Mapping[str, str] | None = None) -> LinkSigner:
    """The LinkSigner for the `[links]` secret variables; MissingSecretError if the secret is unset."""
    env = os.environ if environ is None else environ
    secret = read_secret(links.secret_env, "signed links (confirm, unsubscribe, preferences)", env,
                         min_bytes=MIN_SECRET_BYTES)
    previous = [s.strip() for s in env.get(links.previous_secrets_env, "").split(",") if s.strip()]
    return LinkSigner(
        secret,
        previous,
        max_ages={"confirm": links.confirm_max_age, "preferences": links.preferences_max_age},
    )

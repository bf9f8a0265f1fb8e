"""Signed links: made for one purpose and one subscriber, refused with a clear reason otherwise."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from syndicate.config import settings_from_mapping
from syndicate.errors import MissingSecretError
from syndicate.subscribers._tokens import InvalidLinkError, LinkSigner, _Serializer, key_id, signer_from_settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = 24 * 3600
SIGNER = LinkSigner("current-secret-0123456789", max_ages={"confirm": 7 * DAY, "preferences": 180 * DAY})


def refused(signer: LinkSigner, purpose: str, token: str, **kwargs) -> InvalidLinkError:
    with pytest.raises(InvalidLinkError) as caught:
        signer.check(purpose, token, **kwargs)
    return caught.value


@pytest.mark.parametrize("purpose", ["confirm", "unsubscribe", "preferences"])
def test_a_token_round_trips_and_is_url_safe(purpose):
    token = SIGNER.make(purpose, 42, now=NOW)
    assert SIGNER.check(purpose, token, now=NOW + timedelta(hours=1)) == 42
    assert all(ch.isalnum() or ch in "-_." for ch in token)


@pytest.mark.parametrize("made, checked", [
    ("confirm", "unsubscribe"), ("confirm", "preferences"), ("unsubscribe", "confirm"), ("preferences", "unsubscribe"),
])
def test_a_token_for_another_purpose_is_refused(made, checked):
    error = refused(SIGNER, checked, SIGNER.make(made, 7, now=NOW), now=NOW)
    assert error.reason == "wrong-purpose"
    assert str(error) == f"this link is for {made}, not for {checked}"


def _with_payload(token: str, payload: list) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return body + token[token.index("."):]


def test_a_token_edited_to_name_another_subscriber_is_refused():
    token = SIGNER.make("unsubscribe", 7, now=NOW)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    forged = _with_payload(token, [header[0], 8, header[2]])
    error = refused(SIGNER, "unsubscribe", forged)
    assert error.reason == "forged" and "forged or damaged" in str(error)
    # and a genuine token for subscriber 7 only ever yields 7
    assert SIGNER.check("unsubscribe", token) == 7


@pytest.mark.parametrize("damage", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    lambda t: t[:-10],
    lambda t: t.replace(".", ".x", 1),
])
def test_a_damaged_signature_is_refused_as_forged(damage):
    error = refused(SIGNER, "confirm", damage(SIGNER.make("confirm", 3, now=NOW)), now=NOW)
    assert error.reason == "forged"


@pytest.mark.parametrize("junk", ["", "hello", "a.b.c", "!!!.###.$$$", "eyJ4IjoxfQ.AAAA.BBBB"])
def test_junk_is_refused_as_malformed(junk):
    assert refused(SIGNER, "confirm", junk).reason == "malformed"


def test_a_token_signed_with_a_secret_never_known_is_refused():
    other = LinkSigner("attacker-secret-0123456789")
    error = refused(SIGNER, "confirm", other.make("confirm", 1, now=NOW), now=NOW)
    assert error.reason == "unknown-secret" and "no longer accepted" in str(error)


def test_confirm_and_preferences_links_expire_and_say_so():
    token = SIGNER.make("confirm", 5, now=NOW)
    assert SIGNER.check("confirm", token, now=NOW + timedelta(days=7)) == 5
    error = refused(SIGNER, "confirm", token, now=NOW + timedelta(days=7, seconds=1))
    assert (error.reason, error.subscriber_id, str(error)) == ("expired", 5, "this confirm link has expired")
    prefs = SIGNER.make("preferences", 5, now=NOW)
    assert refused(SIGNER, "preferences", prefs, now=NOW + timedelta(days=181)).reason == "expired"
    assert refused(SIGNER, "preferences", prefs, max_age=60, now=NOW + timedelta(minutes=2)).reason == "expired"


def test_an_unsubscribe_link_never_expires():
    token = SIGNER.make("unsubscribe", 9, now=NOW)
    assert SIGNER.check("unsubscribe", token, max_age=60, now=NOW + timedelta(days=3650)) == 9


def test_rotation_keeps_listed_old_secrets_and_refuses_retired_ones():
    old = LinkSigner("old-secret-0123456789")
    token = old.make("preferences", 11, now=NOW)
    rotated = LinkSigner("new-secret-0123456789", ["old-secret-0123456789"])
    assert rotated.check("preferences", token, now=NOW) == 11
    new_token = rotated.make("preferences", 11, now=NOW)
    assert refused(old, "preferences", new_token, now=NOW).reason == "unknown-secret"
    retired = LinkSigner("newest-secret-0123456789", ["new-secret-0123456789"])
    error = refused(retired, "preferences", token, now=NOW)
    assert error.reason == "unknown-secret" and error.hint and "rotated out" in error.hint
    assert retired.check("preferences", new_token, now=NOW) == 11


def test_signer_from_settings_reads_the_configured_variables():
    settings = settings_from_mapping({"links": {"secret_env": "MY_SECRET", "previous_secrets_env": "MY_OLD"}})
    old = LinkSigner("old-one-0123456789").make("confirm", 4, now=NOW)
    signer = signer_from_settings(settings.links, {"MY_SECRET": "fresh-0123456789abcdefghijklmnopqrstuvwxyz", "MY_OLD": " x-0123456789 , old-one-0123456789 ,"})
    assert signer.check("confirm", old, now=NOW) == 4
    with pytest.raises(MissingSecretError, match="MY_SECRET is not set") as caught:
        signer_from_settings(settings.links, {"MY_OLD": "old-one-0123456789"})
    assert caught.value.hint and "export MY_SECRET" in caught.value.hint


def test_confirm_lifetime_comes_from_settings():
    settings = settings_from_mapping({"links": {"confirm_max_age": 3600}})
    signer = signer_from_settings(settings.links, {"SYNDICATE_SECRET": "s-0123456789abcdefghijklmnopqrstuvwxyz"})
    token = signer.make("confirm", 1, now=NOW)
    assert signer.check("confirm", token, now=NOW + timedelta(minutes=59)) == 1
    assert refused(signer, "confirm", token, now=NOW + timedelta(minutes=61)).reason == "expired"


def test_an_unknown_purpose_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown link purpose"):
        SIGNER.make("login", 1)


def test_tokens_without_zlib_are_read_back_by_itsdangerous_itself():
    """_Serializer leaves zlib out: for ids of every length (repeated digits included, which zlib
    would shorten) and every purpose, itsdangerous's own serializer reads the token back, and the
    payload is JSON as itsdangerous writes it, only uncompressed."""
    rng = random.Random(11)
    ids = [rng.getrandbits(bits) for bits in range(1, 64) for _ in range(20)]
    ids += [int(digit * length) for digit in "123456789" for length in range(1, 20)] + [2**63 - 1, 2**64]
    for purpose in ("confirm", "unsubscribe", "preferences", "csrf"):
        ours = _Serializer("current-secret-0123456789", salt=f"syndicate.link.{purpose}")
        theirs = URLSafeTimedSerializer("current-secret-0123456789", salt=f"syndicate.link.{purpose}")
        for subscriber_id in ids:
            payload = [purpose, subscriber_id, key_id(f"secret-{rng.random()}")]
            token = ours.dumps(payload)
            assert theirs.loads(token) == payload
            assert not token.startswith(".")  # not marked compressed
            assert theirs.load_payload(token.split(".")[0].encode()) == payload
        forged = ours.dumps([purpose, 1, "00000000"])[:-2] + "AA"
        with pytest.raises(Exception, match="does not match"):
            theirs.loads(forged)

"""The classifier against a corpus of real-shaped bounces, complaints, auto-replies and unrelated mail
(tests/data/bounces, expected.toml says what each one is), and the signed address tokens."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from syndicate.bounces import AddressTokens, Classifier

CORPUS = Path(__file__).parent / "data" / "bounces"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text(encoding="utf-8"))
CLASSIFIER = Classifier(AddressTokens("corpus-secret", return_path="bounce+{token}@news.example.org",
                                      unsubscribe="unsubscribe+{token}@news.example.org"))


def test_the_corpus_has_forty_messages_or_more_from_every_kind_of_sender():
    files = {p.name for p in CORPUS.glob("*.eml")}
    assert files == set(EXPECTED), "every message has an expected classification and the reverse"
    assert len(files) >= 40
    kinds = {e["kind"] for e in EXPECTED.values()}
    assert kinds == {"hard", "soft", "complaint", "unsubscribe", "ignored", "unrecognised"}
    senders = " ".join(e["mta"] for e in EXPECTED.values())
    for name in ("Postfix", "Exim", "Sendmail", "Exchange", "Gmail", "Yahoo", "qmail", "SES", "ARF", "Outlook"):
        assert name in senders


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_message_is_classified_as_a_person_would(name):
    expected = EXPECTED[name]
    result = CLASSIFIER.classify((CORPUS / name).read_bytes())
    assert result.kind == expected["kind"], result.diagnostic
    assert result.recipient == expected.get("recipient")
    assert result.status == expected.get("status")
    token = f"{result.tokens[0].kind}{result.tokens[0].id}" if result.tokens else None
    assert token == expected.get("token")


def test_only_bounces_complaints_and_unsubscribe_requests_count_as_recognised():
    """What the mailbox reader may move: never an auto-reply, a delay warning or unrelated mail."""
    for name, expected in EXPECTED.items():
        result = CLASSIFIER.classify((CORPUS / name).read_bytes())
        assert result.recognised == (expected["kind"] in ("hard", "soft", "complaint", "unsubscribe")), name


def test_the_envelope_recipient_given_by_the_mta_ties_a_bounce_without_any_header():
    raw = (CORPUS / "qmail_no_mailbox.eml").read_bytes().replace(b"bounce+d102-4be4cfxec4@", b"bounce@")
    tokens = AddressTokens("corpus-secret")
    result = Classifier(tokens).classify(raw, envelope_recipient=f"bounce+{tokens.token('d', 9)}@news.example.org")
    assert (result.kind, [(t.kind, t.id) for t in result.tokens]) == ("hard", [("d", 9)])


def test_a_forged_or_foreign_token_names_nobody():
    tokens = AddressTokens("corpus-secret", ["old-secret"])
    genuine = tokens.token("d", 12)
    assert tokens.check(genuine).id == 12
    assert tokens.check(genuine.upper()).id == 12, "MTAs may fold the local part to upper case"
    assert tokens.check("d13" + genuine[3:]) is None, "another id under the same MAC"
    assert tokens.check(AddressTokens("someone-else").token("d", 12)) is None
    assert tokens.check(AddressTokens("old-secret").token("u", 5)).id == 5, "a rotated-out secret still ties old bounces"
    assert tokens.check("d12-") is None and tokens.check("") is None and tokens.check("x" * 500) is None


def test_a_forged_token_in_a_corpus_message_ties_nothing():
    raw = (CORPUS / "postfix_user_unknown.eml").read_bytes().replace(b"d101-hj7sife6ic", b"d101-aaaaaaaaaa")
    result = CLASSIFIER.classify(raw)
    assert result.kind == "hard" and result.tokens == ()


def test_address_templates_must_hold_one_token_before_the_domain():
    for bad in ("bounce@news.example.org", "{token}", "bounce+{token}{token}@x.org", "bounce+{token}"):
        with pytest.raises(ValueError, match="token"):
            AddressTokens("s", return_path=bad)
    assert AddressTokens("s", return_path="b+{token}@x.org").envelope_sender("d", 3).startswith("b+d3-")


def test_a_huge_or_broken_message_is_classified_in_bounded_time():
    junk = b"From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
    junk += b"--b\r\nContent-Type: message/delivery-status\r\n\r\n" + b"Final-Recipient: rfc822; \x00\xff\r\n" * 2000 + b"--b"
    result = CLASSIFIER.classify(junk)
    assert result.kind in ("hard", "soft", "ignored", "unrecognised")


@pytest.mark.parametrize("charset", ["x-no-such-charset", "utf-8\x00", "utf-8content-type: message/delivery-status"])
def test_a_bounce_in_a_charset_python_does_not_know_is_still_read(charset):
    """Read as UTF-8: a charset no codec has (a typo, a made-up name) must not stop the mailbox at it."""
    raw = (CORPUS / "exim_plain_no_such_user.eml").read_bytes()
    header = f'Content-Type: text/plain; charset="{charset}"\n'.encode()
    odd = raw.replace(b"Subject: Mail delivery failed", header + b"Subject: Mail delivery failed", 1)
    result = CLASSIFIER.classify(odd)
    assert (result.kind, result.recipient, result.status) == ("hard", "ivan@example.net", "550")

"""Internationalised addresses end to end: sign-up, confirmation, digest and one-click unsubscribe
through the real app and a real SMTP relay that offers SMTPUTF8 (RFC 6531) or does not; and the
Address value every door (form, API, CLI, CSV) validates with the same rules."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from syndicate.cli import main
from syndicate.config import Settings, settings_from_mapping
from syndicate.delivery import SendRequest
from syndicate.mail import OutgoingMessage
from syndicate.subscribers import (
    Address,
    AddressRules,
    InvalidAddressError,
    InvalidSubscriberError,
    SubscriberStatus,
    SubscriberStore,
    import_csv,
    parse_address,
)
from syndicate.wiring import Components
from tests.outbox_support import write_site
from tests.smtpserver import Received, SmtpTestServer, smtp_server  # noqa: F401 (fixture)
from tests.web_helpers import ENVIRON, link_in, serve

# As typed -> (the text stored and shown, the form on the envelope and in To:)
ADDRESSES = {
    "jörg@example.org": ("jörg@example.org", "jörg@example.org"),
    "u@münchen.de": ("u@münchen.de", "u@xn--mnchen-3ya.de"),
    "用户@例子.广告": ("用户@例子.广告", "用户@例子.广告"),
}
SENDER = "digest@localhost"
REFUSED = "cannot deliver to an address with non-ASCII characters before the @"


def needs_smtputf8(typed: str) -> bool:
    return not typed.split("@")[0].isascii()


def parsed(received: Received) -> EmailMessage:
    """The message as a reader sees it: UTF-8 headers (RFC 6532) decoded, not left as raw bytes."""
    return email.message_from_string(received.data.decode("utf-8"), policy=email.policy.default)  # type: ignore[return-value]


def to_of(message: EmailMessage) -> str:
    return message["To"].addresses[0].addr_spec


def smtp_sections(relay: SmtpTestServer, content: Path, smtputf8: str = "auto") -> dict[str, dict]:
    return {
        "mail": {"backend": "smtp"},
        "smtp": {"host": "127.0.0.1", "port": relay.port, "security": "none", "connections": 1, "timeout": 5,
                 "smtputf8": smtputf8},
        "content": {"folder": str(content)},
    }


def csrf(client: httpx.Client) -> str:
    page = client.get("/subscribe")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def sign_up(client: httpx.Client, address: str) -> httpx.Response:
    form = {"email": address, "name": "Jörg Müller", "categories": ["city", "science"], "frequency": "daily",
            "timezone": "Europe/Berlin", "send_hour": "7", "csrf_token": csrf(client)}
    return client.post("/subscribe", data=form)


@pytest.mark.parametrize("offers_smtputf8", [True, False], ids=["relay-with-smtputf8", "relay-without-smtputf8"])
def test_international_addresses_from_sign_up_to_one_click_unsubscribe(tmp_path, offers_smtputf8):
    content = write_site(tmp_path / "site", 6, now=datetime.now(UTC))
    with SmtpTestServer(smtputf8=offers_smtputf8) as relay, \
            serve(tmp_path, sections=smtp_sections(relay, content)) as site, \
            httpx.Client(base_url=site.url, timeout=10) as client:
        store = site.store
        accepted = {typed: forms for typed, forms in ADDRESSES.items() if offers_smtputf8 or not needs_smtputf8(typed)}

        # Sign-up: an address the relay cannot carry is refused on the form, with the reason, and never stored.
        for typed in ADDRESSES:
            page = sign_up(client, typed)
            if typed in accepted:
                assert page.status_code == 200 and "Check your inbox" in page.text
            else:
                assert page.status_code == 422 and REFUSED in page.text
                assert store.find_by_email(typed) is None
        site.app.state.runner.wait_idle()

        # Confirmation: one email each, to the envelope form, with SMTPUTF8 declared where it is needed.
        confirmations = {r.recipients: r for r in relay.received}
        assert set(confirmations) == {(envelope,) for _, envelope in accepted.values()}
        for typed, (text, envelope) in accepted.items():
            received = confirmations[(envelope,)]
            assert ("SMTPUTF8" in received.options) is needs_smtputf8(typed)
            message = parsed(received)
            assert to_of(message) == envelope and message["To"].addresses[0].display_name == "Jörg Müller"
            assert text in message.get_body(("plain",)).get_content()  # "... at jörg@example.org": as they typed it
            answer = client.post(link_in(message, "confirm").removeprefix(site.url))
            assert answer.status_code == 200 and "You are subscribed" in answer.text
            assert store.get_by_email(typed).status is SubscriberStatus.ACTIVE
            assert store.get_by_email(typed).email == text

        # Digest: sent over SMTP to every confirmed address, nothing failed.
        before = len(relay.received)
        delivery = Components(site.settings, environ=ENVIRON, database=site.database).delivery
        report = delivery.send_manual(SendRequest(), datetime.now(UTC))
        assert (report.sent, report.failed, report.retrying) == (len(accepted), 0, 0)
        digests = {r.recipients: r for r in relay.received[before:]}
        assert set(digests) == {(envelope,) for _, envelope in accepted.values()}

        # One-click unsubscribe (RFC 8058) from each digest's List-Unsubscribe header.
        for typed, (_, envelope) in accepted.items():
            message = parsed(digests[(envelope,)])
            assert to_of(message) == envelope
            assert "Story 0" in message.get_body(("plain",)).get_content()
            url = re.search(r"<(http[^>]+/unsubscribe/[^>]+)>", str(message["List-Unsubscribe"]))
            assert url and message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            answer = httpx.post(url.group(1), content=b"List-Unsubscribe=One-Click",
                                headers={"content-type": "application/x-www-form-urlencoded"})
            assert answer.status_code == 200 and "You are unsubscribed" in answer.text
            assert store.get_by_email(typed).status is SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize("offers_smtputf8", [True, False], ids=["relay-with-smtputf8", "relay-without-smtputf8"])
def test_the_api_refuses_what_the_relay_cannot_carry_and_stores_nothing(tmp_path, offers_smtputf8):
    content = write_site(tmp_path / "site", 2, now=datetime.now(UTC))
    with SmtpTestServer(smtputf8=offers_smtputf8) as relay, \
            serve(tmp_path, sections=smtp_sections(relay, content)) as site, \
            httpx.Client(base_url=site.url, headers={"authorization": f"Bearer {ENVIRON['SYNDICATE_ADMIN_TOKEN']}"},
                         timeout=10) as api:
        answer = api.post("/api/subscribers", json={"email": "jörg@example.org", "categories": ["city"]})
        if offers_smtputf8:
            assert answer.status_code == 201 and answer.json()["email"] == "jörg@example.org"
            [received] = relay.received
            assert received.recipients == ("jörg@example.org",) and "SMTPUTF8" in received.options
        else:
            assert answer.status_code == 422 and REFUSED in answer.text
            assert site.store.find_by_email("jörg@example.org") is None and relay.received == []
        idn = api.post("/api/subscribers", json={"email": "u@münchen.de", "categories": ["city"]})
        assert idn.status_code == 201 and idn.json()["email"] == "u@münchen.de"
        assert relay.received[-1].recipients == ("u@xn--mnchen-3ya.de",)


def test_auto_asks_the_relay_once_and_a_relay_that_cannot_be_asked_means_try_again_later(tmp_path, caplog):
    content = write_site(tmp_path / "site", 2, now=datetime.now(UTC))
    with SmtpTestServer(smtputf8=False) as relay, serve(tmp_path, sections=smtp_sections(relay, content)) as site, \
            httpx.Client(base_url=site.url, timeout=10) as client:
        assert sign_up(client, "jörg@example.org").status_code == 422
        asked = relay.sessions
        assert sign_up(client, "用户@例子.广告").status_code == 422
        assert relay.sessions == asked  # the answer was kept: not one connection a sign-up
        assert sign_up(client, "u@münchen.de").status_code == 200  # an ASCII local part never asks
    # A port bound and never listened on refuses every connection, and no other test can take it meanwhile
    # (a port freed by a stopped server may be bound again by a test running beside this one).
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        down = {"mail": {"backend": "smtp"}, "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 2},
                "content": {"folder": str(content)}}
        with serve(tmp_path / "down", sections=down) as site, httpx.Client(base_url=site.url, timeout=10) as client:
            page = sign_up(client, "jörg@example.org")
            assert page.status_code == 422 and "try again later" in page.text
            assert "refused" not in page.text  # why (our relay is down) is for the log, not for the visitor
            assert "cannot tell whether the mail backend carries SMTPUTF8 addresses: ConnectionRefusedError" in caplog.text
            assert site.store.find_by_email("jörg@example.org") is None


def test_the_cli_and_a_csv_import_use_the_same_rules(tmp_path, capsys):
    content = write_site(tmp_path / "site", 2, now=datetime.now(UTC))
    with SmtpTestServer(smtputf8=False) as relay:
        config = tmp_path / "syndicate.toml"
        config.write_text(
            f'[site]\nbase_url = "https://news.example"\n[content]\nfolder = "{content}"\n'
            f'cache = "{tmp_path / "cache" / "articles.pickle"}"\n'
            f'[database]\nurl = "sqlite:///{tmp_path / "db.sqlite"}"\n[mail]\nbackend = "smtp"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {relay.port}\nsecurity = "none"\n[logging]\nlevel = "WARNING"\n',
            encoding="utf-8")

        def cli(*args: str) -> tuple[int, str]:
            try:
                main(["--config", str(config), *args])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            out = capsys.readouterr()
            return code, out.out + out.err

        code, output = cli("subscribers", "add", "jörg@example.org", "--categories", "city", "--confirmed")
        assert code != 0 and REFUSED in output
        rows = tmp_path / "people.csv"
        rows.write_text("email,categories\njörg@example.org,city\nu@münchen.de,city\n" + "a" * 65 + "@example.org,city\n",
                        encoding="utf-8")
        code, output = cli("subscribers", "import", str(rows), "--confirmed")
        assert code == 1
        assert f"{rows}:2: email: 'jörg@example.org': our mail server {REFUSED}" in output
        assert f"{rows}:4: email:" in output and "(at most 64)" in output
        assert "added 1," in output
        code, output = cli("subscribers", "list")
        assert code == 0 and "u@münchen.de" in output and "jörg" not in output


def test_csv_import_checks_each_row_with_the_rules_it_is_given(database, tmp_path):
    rows = tmp_path / "people.csv"
    rows.write_text("email,categories\njörg@example.org,city\nu@münchen.de,city\nann@example.org,city\n", encoding="utf-8")
    store = SubscriberStore(database)
    report = import_csv(store, rows, valid_categories={"city"}, now=datetime.now(UTC),
                        addresses=AddressRules(lambda: False))
    assert report.added == 2 and len(report.problems) == 1 and REFUSED in report.problems[0]
    assert report.problems[0].startswith(f"{rows}:2:")
    assert store.get_by_email("u@xn--mnchen-3ya.de").email == "u@münchen.de"  # found by either form


@pytest.mark.parametrize("typed, text, envelope, key", [
    ("Jörg@Example.ORG", "Jörg@example.org", "Jörg@example.org", "jörg@example.org"),
    ("U@MÜNCHEN.DE", "U@münchen.de", "U@xn--mnchen-3ya.de", "u@münchen.de"),
    ("u@xn--mnchen-3ya.de", "u@münchen.de", "u@xn--mnchen-3ya.de", "u@münchen.de"),
    ("用户@例子.广告", "用户@例子.广告", "用户@例子.广告", "用户@例子.广告"),
    (" ann@example.org ", "ann@example.org", "ann@example.org", "ann@example.org"),
])
def test_an_address_is_normalised_once_and_carries_its_envelope_form(typed, text, envelope, key):
    address = parse_address(typed)
    assert (address.text, address.envelope, address.key) == (text, envelope, key)
    assert Address.stored(address.text) == address  # what the store gives back is the same value


@pytest.mark.parametrize("typed, why", [
    ("a" * 65 + "@example.org", "(at most 64)"),
    ("ä" * 33 + "@example.org", "66 bytes long (at most 64)"),  # RFC 6531 counts octets
    ("a" * 20 + "@" + ".".join(["d" * 58] * 4) + ".org", "too long"),  # 260: over RFC 5321's 254
    ("ann@exa\nmple.org", "line break"),
    ("not-an-address", "not a valid address"),
    ("", "is missing"),
])
def test_an_address_that_cannot_travel_is_refused_with_the_reason(typed, why):
    with pytest.raises(InvalidAddressError, match=re.escape(why)):
        parse_address(typed)


def test_sixty_four_octets_before_the_at_are_accepted():
    assert parse_address("a" * 64 + "@example.org").local == "a" * 64
    assert parse_address("ä" * 32 + "@example.org").needs_smtputf8


def test_a_relay_without_smtputf8_fails_that_message_clearly_and_sends_the_others(smtp_server):
    """Configured `smtputf8 = "yes"` against a relay that does not offer it: that delivery fails with
    the reason, the run goes on."""
    relay = smtp_server(smtputf8=False)
    backend = Components(_smtp_settings(relay, "yes"), environ=ENVIRON).backend()
    assert backend.carries_utf8_addresses() is True  # "yes": taken on trust, not asked
    messages = [
        OutgoingMessage("utf8", SENDER, ("jörg@example.org",), b"Subject: a\r\n\r\nx\r\n", "<a@test>"),
        OutgoingMessage("idn", SENDER, ("u@xn--mnchen-3ya.de",), b"Subject: b\r\n\r\ny\r\n", "<b@test>"),
    ]
    results = {r.key: r for r in backend.send_messages(messages)}
    assert results["utf8"].outcome == "failed" and "does not offer SMTPUTF8" in results["utf8"].reply
    assert results["idn"].outcome == "sent"
    assert [r.recipients for r in relay.received] == [("u@xn--mnchen-3ya.de",)]


def _smtp_settings(relay: SmtpTestServer, smtputf8: str) -> Settings:
    return settings_from_mapping({
        "mail": {"backend": "smtp"},
        "smtp": {"host": "127.0.0.1", "port": relay.port, "security": "none", "timeout": 5, "smtputf8": smtputf8},
    })


def test_no_means_refused_at_entry_without_asking(smtp_server):
    relay = smtp_server()  # offers SMTPUTF8, but the operator said no
    rules = Components(_smtp_settings(relay, "no"), environ=ENVIRON).addresses
    with pytest.raises(InvalidAddressError, match=REFUSED):
        rules.parse("jörg@example.org")
    assert relay.sessions == 0
    assert rules.parse("u@münchen.de").envelope == "u@xn--mnchen-3ya.de"


def test_the_store_lookups_accept_any_form_and_refuse_garbage(database):
    store = SubscriberStore(database)
    with pytest.raises(InvalidSubscriberError, match="not a valid address"):
        store.get_by_email("nobody")
    assert store.find_by_email("u@münchen.de") is None

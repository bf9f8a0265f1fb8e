"""The signup form cannot be used to mail-bomb anyone: limits per client, mailbox, domain and hour,
a honeypot, a minimum time to fill the form, and one-use form tokens (issue 12, point 1)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from syndicate.abuse import client_address, mailbox_key
from syndicate.cli import main
from syndicate.subscribers import LinkSigner
from tests.web_helpers import ADMIN_TOKEN, SECRET, serve

FORM = {"email": "", "name": "", "categories": ["main"], "frequency": "weekly", "weekday": "friday",
        "timezone": "Europe/Paris", "send_hour": "7"}
SUCCESS = "Check your inbox"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


class Clock:
    """The app's clock, moved by the test (a person takes a few seconds to fill the form)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)  # `syndicate status` counts the real last 24 hours

    def __call__(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def served_token(client: httpx.Client, headers: dict[str, str] | None = None) -> str:
    page = client.get("/subscribe", headers=headers or {})
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sign_up(client: httpx.Client, clock: Clock, email: str, *, client_ip: str | None = None, **changes: str) -> httpx.Response:
    """A person's sign-up: fetch the form, take five seconds, post it (from `client_ip` behind the proxy)."""
    headers = {"x-forwarded-for": client_ip} if client_ip else {}
    token = served_token(client, headers)
    clock.wait(5)
    return client.post("/subscribe", data={**FORM, "email": email, "csrf_token": token, **changes}, headers=headers)


def recipients(site) -> list[str]:
    return [str(m["To"]) for m in site.mails()]


def test_mailbox_key_drops_plus_tags_and_gmail_dots():
    assert mailbox_key("Victim+1@Example.org") == ("victim@example.org", "example.org")
    assert mailbox_key("v.i.c.t.i.m+x@googlemail.com") == ("victim@gmail.com", "gmail.com")
    assert mailbox_key("v.ictim@example.org") == ("v.ictim@example.org", "example.org")  # dots matter elsewhere
    assert mailbox_key("+tag@example.org")[0] == "+tag@example.org"  # nothing before the tag: keep it whole


def test_forwarded_for_is_believed_only_from_a_trusted_proxy():
    proxies = ("10.0.0.0/8", "::1")
    assert client_address("198.51.100.7", ["203.0.113.9"], proxies) == "198.51.100.7"  # anyone can send the header
    assert client_address("10.0.0.2", ["203.0.113.9"], proxies) == "203.0.113.9"
    # The client wrote the left part itself; the nearest untrusted hop is the one the proxy saw.
    assert client_address("10.0.0.2", ["1.2.3.4, 203.0.113.9, 10.0.0.5"], proxies) == "203.0.113.9"
    assert client_address("::1", ["2001:db8:1:2:3:4:5:6"], proxies) == "2001:db8:1:2::/64"
    assert client_address("10.0.0.2", ["junk"], proxies) == "10.0.0.2"
    assert client_address("198.51.100.7", [], ()) == "198.51.100.7"


@pytest.mark.slow
def test_a_300_post_flood_at_one_victim_sends_the_configured_handful_and_a_real_signup_still_works(tmp_path):
    clock = Clock()
    with serve(tmp_path, clock=clock, sections={"http": {"trusted_proxies": ["127.0.0.1"]},
                                                "signup": {"min_form_seconds": 3}}) as site, \
            httpx.Client(base_url=site.url) as attacker, httpx.Client(base_url=site.url) as person:
        for n in range(1, 301):
            response = sign_up(attacker, clock, f"victim+{n}@example.org", client_ip="203.0.113.66")
            assert response.status_code == 200 and SUCCESS in response.text  # refused ones look the same
            if n == 150:  # someone else signs up in the middle of the flood
                assert SUCCESS in sign_up(person, clock, "reader@example.net", client_ip="198.51.100.20").text
        assert SUCCESS in sign_up(person, clock, "later@example.net", client_ip="198.51.100.20").text
        sent = recipients(site)
        to_victim = [r for r in sent if r.startswith("victim")]
        assert len(to_victim) == site.settings.signup.per_mailbox_per_hour == 3
        assert "reader@example.net" in sent and "later@example.net" in sent
        status = httpx.get(f"{site.url}/api/status", headers=AUTH).json()
        assert status["signups_refused"] == {"last_24_hours": 297, "by_reason": {"mailbox-limit": 297}}


@pytest.mark.slow
def test_300_clients_at_300_domains_are_held_by_the_overall_limit_until_the_hour_has_passed(tmp_path):
    clock = Clock()
    with serve(tmp_path, clock=clock, sections={"http": {"trusted_proxies": ["127.0.0.1"]},
                                                "signup": {"overall_per_hour": 12, "min_form_seconds": 3}}) as site, \
            httpx.Client(base_url=site.url) as client:
        for n in range(300):
            response = sign_up(client, clock, f"someone@domain{n}.example", client_ip=f"203.0.{n // 250}.{n % 250 + 1}")
            assert SUCCESS in response.text
        assert len(recipients(site)) == 12
        clock.wait(3600)
        assert SUCCESS in sign_up(client, clock, "reader@example.net", client_ip="198.51.100.20").text
        assert recipients(site)[-1] == "reader@example.net"


def test_forwarded_for_from_an_untrusted_peer_does_not_make_new_clients(tmp_path):
    clock = Clock()
    with serve(tmp_path, clock=clock) as site, httpx.Client(base_url=site.url) as client:
        for n in range(12):  # a different header each time, but the peer is one client and no proxy is trusted
            assert SUCCESS in sign_up(client, clock, f"user{n}@domain{n}.example", client_ip=f"203.0.113.{n + 1}").text
        assert len(recipients(site)) == site.settings.signup.per_client_per_hour == 5
        config = tmp_path / "syndicate.toml"
        config.write_text(f'[database]\nurl = "{site.settings.database.url}"\n[logging]\nlevel = "ERROR"\n')
        with pytest.raises(SystemExit) as exit_:
            main(["--config", str(config), "status"])
        assert exit_.value.code == 0


def test_status_counts_refused_signups(tmp_path, capsys):
    clock = Clock()
    with serve(tmp_path, clock=clock) as site, httpx.Client(base_url=site.url) as client:
        for n in range(7):
            sign_up(client, clock, f"user{n}@domain{n}.example")
        config = tmp_path / "syndicate.toml"
        config.write_text(f'[database]\nurl = "{site.settings.database.url}"\n[logging]\nlevel = "ERROR"\n')
        with pytest.raises(SystemExit) as exit_:
            main(["--config", str(config), "status"])
    assert exit_.value.code == 0
    assert "Sign-ups refused in the last 24 hours: 2 (client-limit 2)" in capsys.readouterr().out


def test_honeypot_and_hasty_forms_get_the_same_page_and_send_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="syndicate")
    clock = Clock()
    with serve(tmp_path, clock=clock, sections={"signup": {"min_form_seconds": 3}}) as site, \
            httpx.Client(base_url=site.url) as client:
        trap = sign_up(client, clock, "bot@example.org", website="http://spam.example")
        token = served_token(client)
        clock.wait(1)  # filled in and posted within a second of being served
        hasty = client.post("/subscribe", data={**FORM, "email": "hasty@example.org", "csrf_token": token})
        assert trap.status_code == hasty.status_code == 200
        assert SUCCESS in trap.text and SUCCESS in hasty.text
        assert recipients(site) == []
        assert site.store.count() == 0  # nothing stored either
        assert SUCCESS in sign_up(client, clock, "person@example.org").text
        assert recipients(site) == ["person@example.org"]
        status = httpx.get(f"{site.url}/api/status", headers=AUTH).json()
        assert status["signups_refused"]["by_reason"] == {"honeypot": 1, "too-fast": 1}
    refusals = [r.getMessage() for r in caplog.records if "signup refused" in r.getMessage()]
    assert any("reason=honeypot client=127.0.0.1" in m for m in refusals)


def test_a_form_token_is_spent_on_use_and_bound_to_its_form(tmp_path):
    clock = Clock()
    with serve(tmp_path, clock=clock) as site, httpx.Client(base_url=site.url) as client:
        token = served_token(client)
        clock.wait(5)
        first = client.post("/subscribe", data={**FORM, "email": "ann@example.org", "csrf_token": token})
        again = client.post("/subscribe", data={**FORM, "email": "bob@example.org", "csrf_token": token})
        assert first.status_code == 200 and again.status_code == 403
        assert recipients(site) == ["ann@example.org"]
        # A token served with another form (here the preferences page) does not fit the signup form.
        subscriber = site.store.get_by_email("ann@example.org")
        path = f"/preferences/{LinkSigner(SECRET).make('preferences', subscriber.id, now=clock.now)}"
        page = client.get(path)
        other = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        clock.wait(5)
        assert client.post("/subscribe", data={**FORM, "email": "cy@example.org", "csrf_token": other}).status_code == 403
        assert recipients(site) == ["ann@example.org"]


def test_limits_hold_across_threads_on_every_database(database):
    """Twenty sign-ups for one mailbox at once: exactly the limit is admitted (the count and the insert
    are one step, also on PostgreSQL), and forms are spent exactly once."""
    from concurrent.futures import ThreadPoolExecutor

    from syndicate.abuse import SignupLimits
    from syndicate.config import SignupSettings

    limits = SignupLimits(database, SignupSettings(per_mailbox_per_hour=3))
    now = datetime.now(UTC)
    with ThreadPoolExecutor(8) as pool:
        decisions = list(pool.map(lambda n: limits.admit(client=f"203.0.113.{n}", mailbox="victim@example.org",
                                                         domain="example.org", now=now), range(20)))
        spent = list(pool.map(lambda _: limits.spend_form("form-1", expires_at=now + timedelta(hours=1), now=now),
                              range(8)))
    assert decisions.count(None) == 3 and decisions.count("mailbox-limit") == 17
    assert spent.count(True) == 1
    assert limits.refusals(now) == {"mailbox-limit": 17}


@pytest.mark.browser
def test_a_person_in_a_browser_never_sees_the_honeypot_and_signs_up_after_the_minimum_time(tmp_path):
    from tests.test_web_browser import CHROMIUM, LAUNCH_ARGS

    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    clock = Clock()
    with serve(tmp_path, clock=clock, sections={"signup": {"min_form_seconds": 3}}) as site, \
            sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = chromium.new_page()
            page.goto(f"{site.url}/subscribe")
            assert page.locator("#field-website").is_hidden()
            page.get_by_label("Email address").fill("dana@example.org")
            page.get_by_label("Main").check()
            clock.wait(4)  # the time a person takes to fill the form in
            page.get_by_role("button", name="Subscribe").click()
            assert page.get_by_role("heading", name="Check your inbox").is_visible()
        finally:
            chromium.close()
        assert recipients(site) == ["dana@example.org"]

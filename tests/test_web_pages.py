"""The subscriber pages over real HTTP: double opt-in, no enumeration, CSRF, links that only show
a button on GET, RFC 8058 one-click, clear form errors, rate limits, body limit, security headers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from syndicate.subscribers._model import SubscriberStatus
from syndicate.subscribers._store import SubscriberStore
from syndicate.subscribers._tokens import LinkSigner
from tests.web_helpers import SECRET, link_in, serve

FORM = {"email": "ann@example.org", "name": "Ann", "categories": ["main", "science-environment"], "frequency": "weekly",
        "weekday": "friday", "timezone": "Europe/Paris", "send_hour": "7"}


@pytest.fixture
def site(tmp_path):
    with serve(tmp_path, build=False) as running:
        yield running


@pytest.fixture
def client(site):
    with httpx.Client(base_url=site.url, timeout=10) as browser:
        yield browser


def store_of(site) -> SubscriberStore:
    return site.store


def csrf(client: httpx.Client, path: str = "/subscribe") -> str:
    page = client.get(path)
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sign_up(client: httpx.Client, **changes) -> httpx.Response:
    return client.post("/subscribe", data={**FORM, "csrf_token": csrf(client), **changes})


def test_signup_sends_a_confirmation_and_the_page_never_tells_known_from_new(site, client):
    first = sign_up(client)
    assert first.status_code == 200 and "Check your inbox" in first.text
    [message] = site.mails()
    assert message["To"].addresses[0].addr_spec == "ann@example.org"
    assert link_in(message, "confirm").startswith(site.url + "/confirm/")
    subscriber = store_of(site).get_by_email("ann@example.org")
    assert subscriber.status is SubscriberStatus.PENDING
    assert subscriber.categories == ("main", "science-environment") and subscriber.send_hour == 7 and subscriber.weekday == 4
    # The same address again, and a fresh one: the answers are byte for byte the same.
    again = sign_up(client)
    fresh = sign_up(client, email="bob@example.org")
    assert again.status_code == fresh.status_code == first.status_code
    assert again.content == fresh.content == first.content


def test_signup_without_a_valid_csrf_token_is_refused(site, client):
    csrf(client)  # the visitor has the cookie, but the form comes from elsewhere
    forged = client.post("/subscribe", data={**FORM, "csrf_token": "forged"})
    assert forged.status_code == 403 and "another site" in forged.text
    with httpx.Client(base_url=site.url) as stranger:  # no cookie at all
        token = csrf(client)
        assert stranger.post("/subscribe", data={**FORM, "csrf_token": token}).status_code == 403
    assert site.mails() == []
    assert store_of(site).find_by_email("ann@example.org") is None


@pytest.mark.parametrize("field, value, words", [
    ("email", "not-an-address", "Email address"),
    ("timezone", "Mars/Olympus", "Time zone"),
    ("timezone", "Europe", "Time zone"),  # a folder of the zone database, not a zone
    ("timezone", "Europe/" + "x" * 300, "Time zone"),  # longer than a file name may be
    ("send_hour", "25", "Send at"),
    ("categories", ["knitting"], "unknown category knitting"),
])
def test_form_errors_name_the_field_and_keep_the_values(site, client, field, value, words):
    response = sign_up(client, **{field: value}, name="Ann Keep")
    assert response.status_code == 422
    assert words in response.text and 'role="alert"' in response.text
    assert 'value="Ann Keep"' in response.text
    if field != "categories":
        assert 'value="science-environment" checked' in response.text
    assert site.mails() == []


def test_confirm_link_shows_a_button_and_only_the_post_confirms(site, client):
    sign_up(client)
    link = link_in(site.mails()[0], "confirm")
    page = client.get(link)
    assert page.status_code == 200 and "Confirm my subscription" in page.text
    assert store_of(site).get_by_email("ann@example.org").status is SubscriberStatus.PENDING
    done = client.post(link)
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert store_of(site).get_by_email("ann@example.org").status is SubscriberStatus.ACTIVE
    assert "/preferences/" in done.text


def test_bad_and_expired_links_get_a_clear_page(site, client):
    signer = LinkSigner(SECRET)
    old = signer.make("confirm", 1, now=datetime.now(UTC) - timedelta(days=30))
    expired = client.get(f"/confirm/{old}")
    assert expired.status_code == 410 and "expired" in expired.text and 'href="/subscribe"' in expired.text
    for path in ("/confirm/garbage", "/preferences/garbage", "/unsubscribe/garbage"):
        page = client.get(path)
        assert page.status_code == 400 and "not valid" in page.text
    forged = LinkSigner("another-secret").make("unsubscribe", 1)
    assert client.post(f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"}).status_code == 400


def test_unsubscribe_get_never_unsubscribes_and_one_click_post_does(site, client):
    store = store_of(site)
    sign_up(client)
    subscriber = store.get_by_email("ann@example.org")
    store.confirm(subscriber.id, datetime.now(UTC))
    url = f"/unsubscribe/{LinkSigner(SECRET).make('unsubscribe', subscriber.id)}"
    assert "Unsubscribe</button>" in client.get(url).text
    assert store.get(subscriber.id).status is SubscriberStatus.ACTIVE
    with httpx.Client(base_url=site.url) as mail_client:  # RFC 8058: no cookies, form body, no redirect
        response = mail_client.post(url, content=b"List-Unsubscribe=One-Click",
                                    headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200 and not response.headers.get("location")
        assert store.get(subscriber.id).status is SubscriberStatus.UNSUBSCRIBED
        # multipart/form-data, as some providers send it, works the same (and repeating changes nothing)
        again = mail_client.post(url, files={"List-Unsubscribe": (None, "One-Click")})
        assert again.status_code == 200
    assert store.get(subscriber.id).status is SubscriberStatus.UNSUBSCRIBED


def test_preferences_change_and_errors(site, client):
    store = store_of(site)
    sign_up(client)
    subscriber = store.get_by_email("ann@example.org")
    path = f"/preferences/{LinkSigner(SECRET).make('preferences', subscriber.id)}"
    token = csrf(client, path)
    changed = {"categories": ["technology"], "frequency": "daily", "weekday": "monday", "timezone": "Asia/Tokyo",
               "send_hour": "21", "csrf_token": token}
    response = client.post(path, data=changed)
    assert response.status_code == 200 and "preferences are saved" in response.text
    after = store.get(subscriber.id)
    assert (after.categories, after.frequency.value, after.timezone, after.send_hour) == (("technology",), "daily", "Asia/Tokyo", 21)
    bad = client.post(path, data={**changed, "timezone": "Nowhere/Land", "csrf_token": csrf(client, path)})
    assert bad.status_code == 422 and "Time zone" in bad.text and "Nowhere/Land" in bad.text
    assert store.get(subscriber.id).timezone == "Asia/Tokyo"


def test_confirmation_mails_are_rate_limited_per_address(site, client):
    limit = site.settings.http.confirmations_per_hour
    answers = {sign_up(client).content for _ in range(limit + 2)}
    assert len(answers) == 1  # the page says nothing about the limit either
    assert len(site.mails()) == limit


def test_oversized_bodies_are_refused(site, client):
    big = "x" * (site.settings.http.max_body_bytes + 1)
    response = client.post("/subscribe", data={**FORM, "name": big, "csrf_token": csrf(client)})
    assert response.status_code == 413
    assert store_of(site).find_by_email("ann@example.org") is None


def test_pages_send_security_headers_and_load_only_their_own_script(client):
    response = client.get("/subscribe")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    # One script file of our own (time zone detection, the weekday toggle); the form works without it.
    assert response.text.count("<script") == 1 and '<script src="/assets/signup.js" defer></script>' in response.text
    assert client.get("/assets/signup.js").headers["content-type"].startswith("text/javascript")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_cli_add_mails_a_confirmation_whose_link_confirms_on_the_page(site, client, tmp_path, monkeypatch, capsys):
    from syndicate.cli import main
    from tests.web_helpers import REPO

    settings = site.settings
    config = tmp_path / "cli.toml"
    config.write_text(
        f'[site]\nbase_url = "{site.url}"\n'
        f'[content]\nfolder = "{REPO / "content"}"\ncache = "{settings.content.cache}"\n'
        f'[database]\nurl = "{settings.database.url}"\n'
        f'[mail]\nbackend = "file"\nfolder = "{settings.mail.folder}"\n[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)
    with pytest.raises(SystemExit) as done:
        main(["--config", str(config), "subscribers", "add", "eve@example.org", "--categories", "sports"])
    assert done.value.code in (0, None)
    assert "confirmation email sent to eve@example.org" in capsys.readouterr().err
    [message] = site.mails()
    assert client.post(link_in(message, "confirm")).status_code == 200
    assert store_of(site).get_by_email("eve@example.org").status is SubscriberStatus.ACTIVE


def test_send_confirmation_limits_each_address_per_hour_on_every_database(database, tmp_path):
    from syndicate.mail import MemoryBackend
    from syndicate.subscribers._store import SubscriberDefaults, new_subscriber
    from syndicate.wiring import Components
    from tests.web_helpers import ENVIRON, web_settings

    settings = web_settings(tmp_path)
    store = SubscriberStore(database)
    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    ann = store.sign_up(new_subscriber("ann@example.org", categories=[], valid_categories=set(),
                                       defaults=SubscriberDefaults()), now=now)
    bob = store.sign_up(new_subscriber("bob@example.org", categories=[], valid_categories=set(),
                                       defaults=SubscriberDefaults()), now=now)
    backend = MemoryBackend()
    confirmations = Components(settings, environ=ENVIRON, database=database, backend_factory=lambda: backend).confirmations

    def send(subscriber, at):
        return confirmations.send(subscriber, now=at)

    limit = settings.http.confirmations_per_hour
    assert [send(ann, now + timedelta(minutes=i)) for i in range(limit + 1)] == [True] * limit + [False]
    assert send(bob, now) is True  # the limit is per address
    assert send(ann, now + timedelta(minutes=61)) is True  # the hour has passed for the first one
    assert len(backend.outbox) == limit + 2
    token = re.search(rb"/confirm/([A-Za-z0-9_.\-=]+)", backend.outbox[0].data.replace(b"=\r\n", b"")).group(1).decode()
    assert LinkSigner(SECRET).check("confirm", token, now=now) == ann.id


def test_confirming_sends_one_welcome_even_for_two_clicks_at_once(site, client):
    from concurrent.futures import ThreadPoolExecutor

    sign_up(client)
    url = link_in(site.mails()[-1], "confirm")
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: httpx.post(url, timeout=10), range(2)))
    assert sorted(a.status_code for a in answers) == [200, 200]
    headings = sorted(re.search(r"<h1>([^<]+)</h1>", a.text).group(1) for a in answers)
    assert headings == ["You are already subscribed", "You are subscribed"]
    welcomes = [m for m in site.mails() if m["Subject"].startswith("Welcome to")]
    assert len(welcomes) == 1 and "every Friday at 07:00 (Europe/Paris time)" in welcomes[0].get_body(("plain",)).get_content()


def test_the_signup_form_refuses_a_zone_that_is_not_a_place(site, client):
    for zone in ("Factory", "localtime", "Etc/GMT+5"):
        refused = sign_up(client, timezone=zone)
        assert refused.status_code == 422 and "Time zone: " in refused.text and "not a place" in refused.text, zone
    assert store_of(site).find_by_email("ann@example.org") is None
    page = client.get("/subscribe").text
    assert ">Factory<" not in page and ">localtime<" not in page and 'value="Europe/Paris"' in page


def test_signing_up_an_active_address_mails_it_within_the_hourly_limit(site, client):
    sign_up(client)
    client.post(link_in(site.mails()[-1], "confirm"))
    before = len(site.mails())  # the confirmation and the welcome
    for _ in range(5):
        assert "Check your inbox" in sign_up(client).text
    notes = [m for m in site.mails()[before:] if m["Subject"].startswith("You are already subscribed")]
    # The confirmation took one of the three an hour; the notes get the rest, never more.
    assert len(notes) == 2 and len(site.mails()) == before + 2
    assert "/preferences/" in notes[0].get_body(("plain",)).get_content()


def test_the_subscriber_pages_use_the_configured_templates_stylesheet(tmp_path):
    theme = tmp_path / "theme"
    theme.mkdir()
    (theme / "site.css").write_text("body { color: rebeccapurple; }\n")
    with serve(tmp_path, build=False, sections={"output": {"templates": str(theme)}}) as running, \
            httpx.Client(base_url=running.url, timeout=10) as browser:
        response = browser.get("/assets/site.css")
    assert response.status_code == 200 and response.text == "body { color: rebeccapurple; }\n"

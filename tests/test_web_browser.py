"""The whole subscriber journey in a real browser (Debian's chromium driven by Playwright):
sign up, confirm from the mail, change preferences, unsubscribe; and the RFC 8058 one-click POST."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syndicate.subscribers._model import SubscriberStatus
from syndicate.subscribers._store import new_subscriber
from syndicate.subscribers._tokens import LinkSigner
from tests.web_helpers import SECRET, link_in, serve

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (apt-get install chromium) to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield playwright, chromium
        finally:
            chromium.close()


@pytest.fixture
def site(tmp_path):
    with serve(tmp_path, build=False) as running:
        yield running


def test_subscriber_journey(browser, site):
    _, chromium = browser
    store = site.store
    page = chromium.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type in ("error", "warning") else None)

    page.goto(f"{site.url}/subscribe")
    page.get_by_label("Email address").fill("carla@example.org")
    page.get_by_label("Name (optional)").fill("Carla")
    page.get_by_label("Main").check()
    page.get_by_label("Sports").check()
    page.get_by_label("How often").select_option("daily")
    page.get_by_label("Time zone").select_option("America/New_York")
    page.get_by_label("Send at (your local hour)").select_option("6")
    page.get_by_role("button", name="Subscribe").click()
    assert page.get_by_role("heading", name="Check your inbox").is_visible()
    assert store.get_by_email("carla@example.org").status is SubscriberStatus.PENDING

    page.goto(link_in(site.mails()[-1], "confirm"))
    assert store.get_by_email("carla@example.org").status is SubscriberStatus.PENDING  # the GET alone confirms nothing
    page.get_by_role("button", name="Confirm my subscription").click()
    assert page.get_by_role("heading", name="You are subscribed").is_visible()
    carla = store.get_by_email("carla@example.org")
    assert carla.status is SubscriberStatus.ACTIVE and carla.timezone == "America/New_York" and carla.send_hour == 6

    page.get_by_role("link", name="Change your preferences").click()
    assert page.get_by_label("Sports").is_checked()
    page.get_by_label("Sports").uncheck()
    page.get_by_label("Technology").check()
    page.get_by_label("How often").select_option("weekly")
    page.get_by_label("Day of the weekly digest").select_option("saturday")
    page.get_by_label("Send at (your local hour)").select_option("18")
    page.get_by_role("button", name="Save preferences").click()
    assert page.get_by_text("Your preferences are saved.").is_visible()
    carla = store.get(carla.id)
    assert (carla.categories, carla.frequency.value, carla.weekday, carla.send_hour) == (("main", "technology"), "weekly", 5, 18)

    page.get_by_role("button", name="Unsubscribe").click()
    assert page.get_by_role("heading", name="You are unsubscribed").is_visible()
    assert store.get(carla.id).status is SubscriberStatus.UNSUBSCRIBED
    assert not [p for p in problems if "Content Security Policy" in p], problems
    page.close()


def test_one_click_unsubscribe_post_without_cookies(browser, site):
    playwright, _ = browser
    store = site.store
    new = new_subscriber("dan@example.org", categories=["main"], valid_categories={"main"}, defaults=store.defaults)
    dan = store.add(new, now=datetime.now(UTC), confirmed=True)
    url = f"{site.url}/unsubscribe/{LinkSigner(SECRET).make('unsubscribe', dan.id)}"
    mail_client = playwright.request.new_context()  # a mail provider's POST: no cookies, no page first
    try:
        response = mail_client.post(url, form={"List-Unsubscribe": "One-Click"}, max_redirects=0)
        assert response.status == 200
        assert store.get(dan.id).status is SubscriberStatus.UNSUBSCRIBED
    finally:
        mail_client.dispose()

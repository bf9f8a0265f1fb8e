"""What a reader sees, in Debian's Chromium driven by Playwright: the journey from an article to a
subscription and back out at a phone's width and a desktop's, screenshots of every step (saved as
artifacts under tests/artifacts/, ignored by git), axe-core on every page type, and every email
rendered at 320, 390 and 1,000 px without horizontal overflow."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from syndicate.archive import build_archive
from syndicate.delivery._service import DeliveryService, SendRequest
from syndicate.subscribers._model import SubscriberStatus
from syndicate.wiring import content_source, delivery_config
from tests.web_helpers import ENVIRON, link_in, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ARTICLE = "articles/derby-result/"  # a Sports and Main article of the sample content
WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}
SENT_AT = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # the week of the sample articles


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (tests/setup.sh does, as root) to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def axe():
    module = pytest.importorskip("axe_playwright_python.sync_playwright",
                                 reason="axe-playwright-python is not installed (pip install -e '.[test]')")
    return module.Axe()


@pytest.fixture
def site(tmp_path):
    with serve(tmp_path) as running:
        yield running


def artifacts(name: str) -> Path:
    folder = ARTIFACTS / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    print(f"screenshots in {folder}")
    return folder


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return part.get_content()


def send_digest_and_build_archive(site) -> EmailMessage:
    """Send every active subscriber their digest as of SENT_AT (the sample articles' week) and build the archive."""
    source = content_source(site.settings)
    service = DeliveryService(delivery_config(site.settings), site.database, source, environ=ENVIRON)
    run = service.plan_manual(SendRequest(), SENT_AT)
    assert service.work(run.run_id, now=SENT_AT).sent == 1
    build_archive(site.settings, source, site.database, SENT_AT)
    return site.mails()[-1]


def check_accessible(axe, page, what: str) -> None:
    """No serious or critical axe-core violation on the page."""
    results = axe.run(page)
    bad = [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
           for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{what}: {bad}"


def no_horizontal_overflow(page, what: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"{what}: the document is {width} px wide in a {viewport} px viewport"


@pytest.mark.parametrize("device", sorted(WIDTHS))
def test_reader_journey_from_an_article_to_unsubscribing(chromium, axe, site, device):
    shots = artifacts(f"journey-{device}")
    width, height = WIDTHS[device]
    context = chromium.new_context(viewport={"width": width, "height": height}, timezone_id="Asia/Tokyo")
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    step = iter(range(1, 100))

    mail_view = context.new_page()  # emails shown on a blank page of their own (no site CSP over their inline styles)

    def shot(name: str, where=page) -> None:
        no_horizontal_overflow(where, name)
        where.screenshot(path=str(shots / f"{next(step):02d}-{name}.png"), full_page=True)

    # 1. A reader lands on an article and subscribes from the box under it: Sports and Main preselected.
    page.goto(f"{site.url}/{ARTICLE}")
    assert page.get_by_role("heading", level=1).inner_text() == "Late Goal Settles the City Derby"
    assert page.get_by_role("navigation", name="Categories").get_by_role("link", name="Sports").is_visible()
    shot("article")
    box = page.locator("section.subscribe")
    assert box.get_by_role("heading").inner_text() == "Get Sports and Main by email"
    box.get_by_label("Email address").fill("kim@example.org")
    box.get_by_role("button", name="Subscribe").click()

    # 2. The signup form: address filled in, the article's categories checked, the zone from the browser.
    page.wait_for_url(re.compile(r"/subscribe\?"))
    assert page.get_by_label("Email address", exact=True).input_value() == "kim@example.org"
    assert page.get_by_label("Sports").is_checked() and page.get_by_label("Main").is_checked()
    assert not page.get_by_label("Technology").is_checked()
    assert page.get_by_label("Time zone").input_value() == "Asia/Tokyo"
    assert not page.get_by_label("Day of the weekly digest").is_visible()  # daily by default
    page.get_by_label("How often").select_option("weekly")
    assert page.get_by_label("Day of the weekly digest").is_visible()
    page.get_by_label("Day of the weekly digest").select_option("monday")
    page.get_by_label("Send at (your local hour)").select_option("7")
    shot("signup")
    check_accessible(axe, page, "signup page")
    page.get_by_role("button", name="Subscribe").click()
    assert page.get_by_role("heading", name="Check your inbox").is_visible()
    shot("check-inbox")
    kim = site.store.get_by_email("kim@example.org")
    assert (kim.status, kim.categories, kim.timezone, kim.frequency.value) == (
        SubscriberStatus.PENDING, ("main", "sports"), "Asia/Tokyo", "weekly")

    # 3. Confirm from the email.
    confirmation = site.mails()[-1]
    mail_view.set_content(html_of(confirmation))
    shot("confirmation-email", mail_view)
    page.goto(link_in(confirmation, "confirm"))
    assert page.get_by_text("kim@example.org").is_visible()
    shot("confirm")
    check_accessible(axe, page, "confirm page")
    page.get_by_role("button", name="Confirm my subscription").click()
    assert page.get_by_role("heading", name="You are subscribed").is_visible()
    assert page.get_by_text(re.compile(r"every Monday at 07:00 \(Asia/Tokyo time\), the first on Monday \d+ \w+")).is_visible()
    shot("subscribed")
    check_accessible(axe, page, "subscribed page")

    # 4. The welcome email says the same, and carries the preferences and unsubscribe links.
    welcome = site.mails()[-1]
    assert welcome["Subject"] == f"Welcome to {site.settings.site.title}"
    assert "every Monday at 07:00 (Asia/Tokyo time)" in welcome.get_body(("plain",)).get_content()
    mail_view.set_content(html_of(welcome))
    shot("welcome-email", mail_view)

    # 5. The confirm link opened again says what already happened.
    page.goto(link_in(confirmation, "confirm"))
    assert page.get_by_role("heading", name="You are already subscribed").is_visible()

    # 6. Change the preferences.
    page.goto(link_in(welcome, "preferences"))
    assert page.get_by_label("Sports").is_checked()
    page.get_by_label("Technology").check()
    page.get_by_role("button", name="Save preferences").click()
    assert page.get_by_text("Your preferences are saved.").is_visible()
    assert site.store.get(kim.id).categories == ("main", "sports", "technology")
    shot("preferences")
    check_accessible(axe, page, "preferences page")

    # 7. A digest is sent (a manual send through the outbox, file backend), the archive is built, and
    #    "View in browser" in the digest opens its archive page.
    digest = send_digest_and_build_archive(site)
    assert digest["Subject"].startswith("Late Goal Settles the City Derby")
    mail_view.set_content(html_of(digest))
    shot("digest-email", mail_view)
    assert mail_view.get_by_text(re.compile(r"Issue 1")).is_visible()
    page.goto(mail_view.get_by_role("link", name="View in browser").first.get_attribute("href"))
    assert page.get_by_role("heading", level=1).inner_text() == "Week 48 of 2026 (23 November to 29 November)"
    assert page.get_by_role("link", name="Late Goal Settles the City Derby").is_visible()
    assert "kim@example.org" not in page.content()
    shot("archive-issue")
    check_accessible(axe, page, "archive page")
    page.get_by_role("navigation", name="Categories").get_by_role("link", name="Archive").click()
    assert page.get_by_role("link", name="Week 48 of 2026 (23 November to 29 November)").is_visible()
    shot("archive-index")
    check_accessible(axe, page, "archive index")
    page.get_by_role("link", name="Sports", exact=True).last.click()
    assert page.get_by_role("heading", level=1).inner_text() == "Sports digests"
    shot("archive-category")
    check_accessible(axe, page, "archive category page")

    # 8. Unsubscribe: the page names the address; opened again, it says it already happened.
    page.goto(link_in(welcome, "unsubscribe"))
    assert page.get_by_role("heading", name="Unsubscribe kim@example.org?").is_visible()
    shot("unsubscribe")
    check_accessible(axe, page, "unsubscribe page")
    page.get_by_role("button", name="Unsubscribe").click()
    assert page.get_by_text("No more digests will be sent to kim@example.org.").is_visible()
    assert site.store.get(kim.id).status is SubscriberStatus.UNSUBSCRIBED
    page.goto(link_in(welcome, "unsubscribe"))
    assert page.get_by_role("heading", name="You are already unsubscribed").is_visible()
    assert page.get_by_text(re.compile("kim@example.org has been unsubscribed since")).is_visible()
    shot("already-unsubscribed")
    assert not [p for p in problems if "Content Security Policy" in p], problems
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_site_page_type_is_accessible_and_fits_a_320px_screen(chromium, axe, site, scheme):
    shots = artifacts(f"site-{scheme}")
    pages = {"index": "/", "category": "/categories/sports/", "article": f"/{ARTICLE}", "not-found": "/no/such/page"}
    for width in (320, 1280):
        context = chromium.new_context(viewport={"width": width, "height": 800}, color_scheme=scheme)
        page = context.new_page()
        for name, path in pages.items():
            response = page.goto(f"{site.url}{path}")
            assert response.status == (404 if name == "not-found" else 200), name
            assert page.locator("section.subscribe input[type=email]").is_visible(), f"{name}: no subscribe box"
            no_horizontal_overflow(page, f"{name} at {width} px")
            page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
            if width == 320:
                check_accessible(axe, page, f"{name} ({scheme})")
        context.close()


def test_already_subscribed_signup_sends_a_short_email_and_the_page_reveals_nothing(chromium, site):
    page = chromium.new_page()
    for attempt in range(2):
        page.goto(f"{site.url}/subscribe?email=lee@example.org&categories=main")
        page.get_by_role("button", name="Subscribe").click()
        assert page.get_by_role("heading", name="Check your inbox").is_visible()
        if attempt == 0:
            page.goto(link_in(site.mails()[-1], "confirm"))
            page.get_by_role("button", name="Confirm my subscription").click()
    last = site.mails()[-1]
    assert last["Subject"] == f"You are already subscribed to {site.settings.site.title}"
    assert "/preferences/" in last.get_body(("plain",)).get_content()
    page.close()


def test_every_email_fits_320_390_and_1000px_without_horizontal_overflow(chromium, site):
    shots = artifacts("emails")
    page = chromium.new_page()
    page.goto(f"{site.url}/subscribe?email=a-rather-long-address.for-wrapping@example.org&categories=main")
    page.get_by_label("How often").select_option("weekly")  # a week of sample articles for the digest
    page.get_by_role("button", name="Subscribe").click()
    page.goto(link_in(site.mails()[-1], "confirm"))
    page.get_by_role("button", name="Confirm my subscription").click()
    page.goto(f"{site.url}/subscribe?email=a-rather-long-address.for-wrapping@example.org&categories=main")
    page.get_by_role("button", name="Subscribe").click()
    send_digest_and_build_archive(site)
    mails = {m["Subject"]: m for m in site.mails()}
    assert len(mails) == 4  # confirmation, welcome, already subscribed, the digest
    page.close()
    for width in (320, 390, 1000):
        context = chromium.new_context(viewport={"width": width, "height": 800})
        view = context.new_page()
        for number, message in enumerate(mails.values()):
            view.set_content(html_of(message))
            no_horizontal_overflow(view, f"{message['Subject']} at {width} px")
            view.screenshot(path=str(shots / f"email{number}-{width}.png"), full_page=True)
        context.close()

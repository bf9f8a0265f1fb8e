"""The operator's journey through the console in a real browser (Debian's chromium, Playwright), with
mail going to a real SMTP server (aiosmtpd) told to refuse one address once; and axe-core on every page."""

from __future__ import annotations

import email
import email.policy
import os
import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syndicate.campaigns import NewCampaign
from syndicate.delivery import SendRequest
from tests.console_helpers import console_site
from tests.outbox_support import add_subscribers, open_db
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)
from tests.test_web_browser import CHROMIUM, LAUNCH_ARGS
from tests.web_helpers import ADMIN_TOKEN

pytestmark = [pytest.mark.browser, pytest.mark.slow]

expect = None  # playwright's expect, set by the chromium fixture (playwright is imported only when it runs)
AXE = Path(__file__).resolve().parent / ".cache" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (apt-get install chromium) to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    global expect
    expect = sync_api.expect
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SYNDICATE_TEST_ARTIFACTS", tmp_path / "artifacts")) / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for_finished_run(page, timeout: float = 20.0) -> None:
    page.locator(".run-status", has_text="finished").wait_for(timeout=timeout * 1000)


def test_operator_journey(chromium, smtp_server, tmp_path):
    server = smtp_server(strict=True)
    shots = artifacts(tmp_path)
    with console_site(tmp_path, server.port) as (url, components):
        database = open_db(components.settings.database.url)
        city = add_subscribers(database, 3, categories=("city",), now=datetime.now(UTC))
        add_subscribers(database, 1, categories=("science",), now=datetime.now(UTC), start=10)
        database.close()
        server.faults.rcpt(city[1].email, 550, times=1)
        # Tall enough that no click needs a scroll: scrolled clicks beside the sandboxed preview frame were
        # lost by this chromium now and then (a real user's were not).
        context = chromium.new_context(viewport={"width": 1280, "height": 2000})
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)

        page.goto(f"{url}/admin/subscribers")  # sent to the sign-in form first
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Subscribers")).to_be_visible()

        page.get_by_label("Address or name").fill("reader1@")  # htmx: the table follows the typing
        expect(page.locator("#results tbody tr")).to_have_count(1)
        assert page.locator("#results").get_by_text(city[1].email).is_visible()
        page.get_by_role("link", name=city[1].email).click()
        expect(page.get_by_role("heading", name=city[1].email)).to_be_visible()
        page.screenshot(path=str(shots / "subscriber.png"), full_page=True)

        page.get_by_role("navigation").get_by_role("link", name="Send").click()
        page.get_by_label("city").check()
        page.get_by_role("button", name="Dry run and preview").click()
        assert page.locator(".count").inner_text() == "3 digests would be sent."
        frame = page.frame_locator("iframe.preview")
        frame.get_by_role("link", name="Story 0", exact=True).wait_for()  # the real digest HTML of the first subscriber
        page.screenshot(path=str(shots / "send-preview.png"), full_page=True)
        page.get_by_label("Send 3 digests now").check()
        page.get_by_role("button", name="Send", exact=True).click()
        wait_for_finished_run(page)  # the live run page (htmx polling) reaches "finished"
        assert "failed 1" in page.locator("#progress").inner_text()
        page.screenshot(path=str(shots / "run.png"), full_page=True)
        assert sorted(m.recipients[0] for m in server.received) == [city[0].email, city[2].email]

        page.get_by_role("navigation").get_by_role("link", name="Failures").click()
        expect(page.get_by_text("550").first).to_be_visible()
        page.screenshot(path=str(shots / "failures.png"), full_page=True)
        page.get_by_role("button", name=re.compile(f"Requeue delivery .* to {re.escape(city[1].email)}")).click()
        expect(page.get_by_text("Requeued 1 and sending.")).to_be_visible()
        deadline = time.monotonic() + 20
        while len(server.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        digests = Counter(m.recipients[0] for m in server.received)
        assert digests == {city[0].email: 1, city[1].email: 1, city[2].email: 1}

        page.get_by_role("navigation").get_by_role("link", name="Campaigns").click()
        page.get_by_label("Subject", exact=True).fill("We are moving")
        page.get_by_label("Message (Markdown)").fill("Our new address is **news.example**.")
        page.get_by_label("city").check()
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_role("heading", name="Campaign 1: We are moving")).to_be_visible()
        page.frame_locator("iframe.preview").get_by_text("news.example").first.wait_for()
        page.get_by_label("Send one copy to").fill("editor@example.org")
        page.get_by_role("button", name="Send test").click()
        expect(page.get_by_text("Test copy to editor@example.org: sent")).to_be_visible()
        page.get_by_label("Send to 3 subscribers now").check()
        page.get_by_role("button", name="Send campaign").click()
        wait_for_finished_run(page)
        page.screenshot(path=str(shots / "campaign-run.png"), full_page=True)
        campaign = Counter(
            m.recipients[0] for m in server.received
            if email.message_from_bytes(m.data, policy=email.policy.default)["Subject"] == "We are moving"
        )
        assert campaign == {"editor@example.org": 1, city[0].email: 1, city[1].email: 1, city[2].email: 1}

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_text("Signed out.")).to_be_visible()
        page.goto(f"{url}/admin/")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
        context.close()


def test_every_console_page_passes_axe(chromium, smtp_server, tmp_path):
    if not AXE.exists():
        pytest.skip(f"axe-core not found at {AXE}: tests/setup.sh fetches it with npm (`make test` runs it)")
    server = smtp_server()
    with console_site(tmp_path, server.port) as (url, components):
        database = open_db(components.settings.database.url)
        people = add_subscribers(database, 2, categories=("city",), now=datetime.now(UTC))
        database.close()
        components.campaigns.create(NewCampaign("Hello", "Hi **there**.", ()), now=datetime.now(UTC), actor="test")
        run = components.delivery.plan_manual(SendRequest(), datetime.now(UTC))
        context = chromium.new_context(bypass_csp=True)  # axe is injected as a script of its own
        page = context.new_page()
        page.goto(f"{url}/admin/login")
        pages = {"login": page.url}
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        for name, path in [("dashboard", "/admin/"), ("subscribers", "/admin/subscribers"),
                           ("subscriber", f"/admin/subscribers/{people[0].id}"), ("import", "/admin/subscribers/import"),
                           ("send", "/admin/send"), ("run", f"/admin/runs/{run.run_id}"), ("failures", "/admin/failures"),
                           ("campaigns", "/admin/campaigns"), ("campaign", "/admin/campaigns/1")]:
            pages[name] = f"{url}{path}"
        source = AXE.read_text(encoding="utf-8")
        found: dict[str, list[str]] = {}
        for name, address in pages.items():
            if name == "login":  # signed in already: the form is seen from a context of its own
                other = chromium.new_context(bypass_csp=True)
                target = other.new_page()
                target.goto(address)
            else:
                page.goto(address)
                target = page
            target.evaluate(source)
            result = target.evaluate("async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
                                     " return {violations: r.violations, passes: r.passes.length}; }")
            assert result["passes"] > 10, name  # axe really looked at the page
            bad = [f"{v['id']} ({v['impact']}): {v['help']}" for v in result["violations"] if v["impact"] in ("serious", "critical")]
            if bad:
                found[name] = bad
            if name == "login":
                other.close()
        assert found == {}
        context.close()

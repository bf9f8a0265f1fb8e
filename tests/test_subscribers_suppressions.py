"""The suppression list: addresses and whole domains that never get mail, from the CLI, the API, bounces
and complaints; checked when a run is planned and before a confirmation email goes out."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from syndicate.audit import AuditLog
from syndicate.subscribers import SubscriberStatus, SuppressionList
from tests.bounce_support import env, serve_app  # noqa: F401  (fixture)
from tests.outbox_support import add_subscribers
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)
from tests.web_helpers import ADMIN_TOKEN, ENVIRON

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_suppressed_addresses_and_domains_get_no_digest(env):
    run, server, database, _ = env
    people = add_subscribers(database, 4, now=datetime.now(UTC))
    # reader0@example.org by address; a domain entry covers its subdomains, so a sub.example.org address too
    code, out, err = run("suppressions", "add", people[0].email, "--reason", "asked by phone")
    assert code == 0 and out.startswith("suppressed"), err
    code, out, err = run("suppressions", "add", "@other.example")
    assert code == 0, err
    from syndicate.subscribers import SubscriberDefaults, SubscriberStore, new_subscriber

    store = SubscriberStore(database)
    for address in ("ann@other.example", "bob@mail.other.example"):
        store.add(new_subscriber(address, categories=["city"], valid_categories=["city"], defaults=SubscriberDefaults()),
                  now=datetime.now(UTC), confirmed=True)
    assert run("send", "--yes")[0] == 0
    assert Counter(r.recipients[0] for r in server.received) == Counter(p.email for p in people[1:])

    code, out, _ = run("suppressions", "list")
    assert people[0].email in out and "@other.example" in out and "asked by phone" in out
    code, out, _ = run("suppressions", "remove", people[0].email)
    assert code == 0
    code, out, err = run("suppressions", "remove", people[0].email)
    assert code != 0 and "not suppressed" in err


def test_import_and_export_round_trip_with_bad_lines_named(env, tmp_path):
    run, server, database, _ = env
    source = tmp_path / "list.txt"
    source.write_text("# from the old system\nann@example.org\n@spamtrap.example\nnot an address\n\nBOB@Example.org\n")
    code, out, err = run("suppressions", "import", str(source))
    assert code == 1 and "suppressed 3 new entries; 1 lines refused" in out
    assert "line 4" in err and "not an address" in err
    code, out, _ = run("suppressions", "export")
    lines = out.strip().splitlines()
    assert lines[0] == "value,kind,source,created_at,reason"
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["@spamtrap.example", "ann@example.org", "bob@example.org"]
    again = tmp_path / "again.csv"
    again.write_text(out)
    code, out, _ = run("suppressions", "import", str(again))
    assert code == 0 and "suppressed 0 new entries" in out


def test_a_suppressed_address_that_signs_up_again_gets_no_email_and_no_hint(tmp_path):
    with serve_app(tmp_path, ENVIRON, mail={"backend": "file", "folder": str(tmp_path / "outbox")}) as (url, components):
        SuppressionList(components.database).add("gone@example.org", reason="complaint", source="operator",
                                                  now=datetime.now(UTC))
        with httpx.Client(base_url=url, timeout=10) as client:
            import re

            def sign_up(address: str) -> httpx.Response:
                page = client.get("/subscribe")
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                return client.post("/subscribe", data={"email": address, "categories": ["main"], "frequency": "daily",
                                                       "timezone": "UTC", "send_hour": "8", "csrf_token": token})

            suppressed, fresh = sign_up("gone@example.org"), sign_up("new@example.org")
        assert suppressed.status_code == fresh.status_code == 200
        assert suppressed.text.replace("gone@example.org", "X") == fresh.text.replace("new@example.org", "X")
        components.store.get_by_email("gone@example.org")  # stored pending, as any sign-up
        import time

        deadline = time.monotonic() + 10
        outbox = tmp_path / "outbox" / "new"
        while time.monotonic() < deadline and not (outbox.is_dir() and list(outbox.iterdir())):
            time.sleep(0.05)
        time.sleep(0.3)
        sent = [p.read_bytes() for p in outbox.iterdir()] if outbox.is_dir() else []
        assert len(sent) == 1 and b"new@example.org" in sent[0], "only the fresh address got a confirmation"
        assert components.store.get_by_email("gone@example.org").status is SubscriberStatus.PENDING


@pytest.fixture
def api(tmp_path):
    with serve_app(tmp_path, ENVIRON) as (url, components):
        with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
            yield client, components


def test_the_api_adds_lists_exports_imports_and_removes_suppressions(api):
    client, components = api
    assert httpx.get(str(client.base_url) + "/api/suppressions").status_code == 401
    answer = client.post("/api/suppressions", json={"entries": ["a@example.org", "@blocked.example", "junk"]})
    assert answer.status_code == 201 and answer.json()["added"] == ["a@example.org", "@blocked.example"]
    assert "junk" in answer.json()["problems"][0]
    assert client.post("/api/suppressions", json={"entries": ["junk"]}).status_code == 422
    listed = client.get("/api/suppressions").json()["items"]
    assert {(i["kind"], i["value"], i["source"]) for i in listed} == {("address", "a@example.org", "api"), ("domain", "blocked.example", "api")}
    assert SuppressionList(components.database).is_suppressed("x@sub.blocked.example")
    imported = client.post("/api/suppressions/import", content=b"c@example.org\nd@example.org\nnope\n",
                           headers={"Content-Type": "text/plain"})
    assert imported.json()["added"] == 2 and len(imported.json()["problems"]) == 1
    assert "c@example.org" in client.get("/api/suppressions/export").text
    assert client.delete("/api/suppressions/a@example.org").status_code == 204
    assert client.delete("/api/suppressions/a@example.org").status_code == 404
    assert not SuppressionList(components.database).is_suppressed("a@example.org")


def test_api_status_reports_deliverability(api):
    client, components = api
    report = client.get("/api/status").json()["deliverability"]
    assert report["last_7_days"] == {"sent": 0, "hard": 0, "soft": 0, "complaints": 0, "bounce_rate": 0.0, "complaint_rate": 0.0}
    assert report["warnings"] == []


def test_api_text_no_database_can_store_is_a_422_naming_the_field(api):
    """A JSON escape gives a lone surrogate (no encoding can store it) or a NUL (PostgreSQL's text cannot)."""
    client, components = api

    def post(path: str, body: dict) -> httpx.Response:  # json.dumps writes a lone surrogate as its \\ud800 escape
        return client.post(path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})

    refused = post("/api/suppressions", {"entries": ["a@example.org"], "reason": "spam \x00"})
    assert refused.status_code == 422 and '"reason"' in refused.text and "no database or email can carry (U+0000)" in refused.text
    refused = post("/api/suppressions", {"entries": ["a@example.org"], "reason": "spam \ud800"})  # pydantic's own refusal
    assert refused.status_code == 422 and '"reason"' in refused.text and "\\ud800" in refused.text  # echoed escaped
    refused = post("/api/subscribers", {"email": "ann@example.org", "categories": ["main"], "name": "Ann \ud800"})
    assert refused.status_code == 422 and "name" in refused.text
    assert client.get("/api/suppressions").json()["items"] == []
    assert components.store.find_by_email("ann@example.org") is None


def test_free_text_an_operator_types_is_stored_without_what_a_database_cannot_hold(database):
    """The suppression list's reasons and the audit log's details (a requeue's reason from the console)."""
    listing = SuppressionList(database)
    assert listing.add("a@example.org", reason="bounced\x00 twice \ud800", source="operator", now=NOW)
    [row] = list(listing.iter_all())
    assert row.reason == "bounced twice "
    log = AuditLog(database)
    log.record(NOW, "console:ann\x00", "delivery.requeue", "delivery", 1, "relay fixed\x00 \ud800")
    [entry] = log.recent(10)
    assert (entry.actor, entry.detail) == ("console:ann", "relay fixed ")

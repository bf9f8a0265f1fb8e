"""The admin API over real HTTP: the bearer token, subscribers, builds, status, sends, and
schemathesis over the served OpenAPI document finding no server error."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from syndicate.service import Service
from tests.web_helpers import ADMIN_TOKEN, ENVIRON, link_in, serve, web_settings

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
EXAMPLES = 60  # per operation, valid and invalid input mixed: about 500 requests in all


def jobs() -> dict:
    """Shaped as syndicate.service's Service.status() reports it."""
    return {"running": True, "state": "running", "lease": None,
            "jobs": [{"id": "digests", "interval_seconds": 900, "next_run_at": "2026-01-01T08:00:00+00:00"}]}


@pytest.fixture
def site(tmp_path):
    with serve(tmp_path, scheduler_status=jobs) as running:
        yield running


@pytest.fixture
def api(site):
    with httpx.Client(base_url=site.url, headers=AUTH, timeout=30) as client:
        yield client


def test_every_endpoint_wants_the_token_and_says_nothing_without_it(site):
    with httpx.Client(base_url=site.url) as anonymous:
        for method, path in (("GET", "/api/status"), ("GET", "/api/subscribers"), ("POST", "/api/build"),
                             ("GET", "/api/subscribers/1"), ("DELETE", "/api/subscribers/1"), ("GET", "/api/sends/1")):
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {ADMIN_TOKEN}"},
                            {"authorization": f"Bearer {ADMIN_TOKEN}x"}):
                response = anonymous.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.content == b"" and response.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/api/status", headers=AUTH).status_code == 200
        assert anonymous.get("/api/openapi.json").json()["paths"]["/api/sends"]


def test_without_a_configured_token_the_api_stays_locked(tmp_path):
    environ = {k: v for k, v in ENVIRON.items() if k != "SYNDICATE_ADMIN_TOKEN"}
    with serve(tmp_path, build=False, environ=environ) as site, httpx.Client(base_url=site.url) as client:
        assert client.get("/api/status", headers={"authorization": "Bearer"}).status_code == 401
        assert client.get("/api/status", headers=AUTH).status_code == 401


def test_subscriber_lifecycle(site, api):
    added = api.post("/api/subscribers", json={"email": "Ann@Example.org", "categories": ["main"], "send_hour": 6})
    assert added.status_code == 201
    ann = added.json()
    assert ann["status"] == "pending" and ann["send_hour"] == 6 and ann["timezone"] == "Europe/Paris"
    assert link_in(site.mails()[0], "confirm")  # not --confirmed: the double opt-in mail went out
    bob = api.post("/api/subscribers", json={"email": "bob@example.org", "categories": ["sports"], "confirmed": True}).json()
    assert bob["status"] == "active" and bob["next_send_at"]
    assert len(site.mails()) == 1
    assert api.post("/api/subscribers", json={"email": "ann@example.org", "categories": ["main"]}).status_code == 409
    bad = api.post("/api/subscribers", json={"email": "ann@", "categories": ["main"]})
    assert bad.status_code == 422 and bad.json()["field"] == "email"
    listed = api.get("/api/subscribers", params={"status": "active"}).json()
    assert [s["email"] for s in listed["subscribers"]] == ["bob@example.org"]
    page = api.get("/api/subscribers", params={"limit": 1}).json()
    assert len(page["subscribers"]) == 1 and page["next_after"] == ann["id"]
    assert api.get("/api/subscribers", params={"after": page["next_after"]}).json()["subscribers"][0]["id"] == bob["id"]
    changed = api.patch(f"/api/subscribers/{bob['id']}", json={"frequency": "weekly", "weekday": "sunday"}).json()
    assert (changed["frequency"], changed["weekday"], changed["categories"]) == ("weekly", "sunday", ["sports"])
    refused = api.patch(f"/api/subscribers/{bob['id']}", json={"timezone": "Atlantis"})
    assert refused.status_code == 422 and refused.json()["field"] == "timezone"
    refused = api.patch(f"/api/subscribers/{bob['id']}", json={"timezone": "Factory"})
    assert refused.status_code == 422 and "not a place" in refused.json()["error"]
    assert api.post(f"/api/subscribers/{bob['id']}/unsubscribe").json()["status"] == "unsubscribed"
    assert api.delete(f"/api/subscribers/{ann['id']}").status_code == 204
    assert api.get(f"/api/subscribers/{ann['id']}").status_code == 404
    assert api.delete(f"/api/subscribers/{ann['id']}").status_code == 404


def test_status_build_and_health(site, api):
    status = api.get("/api/status").json()
    assert status["scheduler"]["jobs"][0]["id"] == "digests"
    assert status["subscribers"] == {"pending": 0, "active": 0, "unsubscribed": 0, "bounced": 0}
    feed = site.settings.output.folder / "feeds" / "all.rss.xml"
    feed.unlink()
    built = api.post("/api/build").json()
    assert built["ok"] and built["articles"] == 15 and feed.is_file()
    health = httpx.get(f"{site.url}/healthz")
    assert health.status_code == 200 and health.json()["database"] == "ok"


def test_sends_answer_503_without_a_delivery_service(api):
    response = api.post("/api/sends", json={"frequency": "daily"})
    assert response.status_code == 503 and "delivery" in response.json()["error"]


def test_manual_send_runs_in_the_background(tmp_path):
    from syndicate.delivery import DeliveryService
    from syndicate.storage._database import open_database
    from syndicate.wiring import content_source, delivery_config, load_corpus
    from tests.web_helpers import web_settings

    settings = web_settings(tmp_path)
    database = open_database(settings.database)
    service = DeliveryService(delivery_config(settings), database, content_source(settings), environ=ENVIRON)
    newest = load_corpus(settings).articles[0]
    topic = newest.category_slugs[0]
    clock = lambda: newest.published + timedelta(hours=1)  # noqa: E731 - an hour after the newest article: it is new
    with serve(tmp_path, database=database, delivery=service, clock=clock) as site, \
            httpx.Client(base_url=site.url, headers=AUTH) as api:
        api.post("/api/subscribers", json={"email": "bob@example.org", "categories": [topic], "confirmed": True})
        dry = api.post("/api/sends", json={"categories": [topic], "dry_run": True})
        assert dry.status_code == 200 and dry.json()["recipients"][0]["email"] == "bob@example.org"
        assert site.mails() == []
        test_copy = api.post("/api/sends", json={"categories": [topic], "test_to": "editor@example.org"})
        assert test_copy.status_code == 200 and test_copy.json()["result"]["outcome"] == "sent"
        assert [m["To"].addresses[0].addr_spec for m in site.mails()] == ["editor@example.org"]
        assert api.post("/api/sends", json={"categories": ["knitting"]}).status_code == 422
        assert api.post("/api/sends", json={"subscriber": "nobody@example.org"}).status_code == 404
        accepted = api.post("/api/sends", json={"categories": [topic]})
        assert accepted.status_code == 202
        run_id = accepted.json()["run_id"]
        deadline = time.monotonic() + 20
        while (report := api.get(f"/api/sends/{run_id}").json())["status"] != "finished":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert report["sent"] == 1
        assert "bob@example.org" in {m["To"].addresses[0].addr_spec for m in site.mails()}
        assert api.get("/api/sends/999999").status_code == 404


@pytest.mark.slow
def test_the_api_never_answers_with_a_server_error(tmp_path):
    """Every operation of the served OpenAPI document, sends included, with generated valid and
    invalid input: never a 5xx."""
    from syndicate.delivery import DeliveryService
    from syndicate.storage._database import open_database
    from syndicate.wiring import content_source, delivery_config
    from tests.web_helpers import web_settings

    config = web_settings(tmp_path)
    database = open_database(config.database)
    delivery = DeliveryService(delivery_config(config), database, content_source(config), environ=ENVIRON)
    try:
        with serve(tmp_path, scheduler_status=jobs, database=database, delivery=delivery) as site:
            schema = schemathesis.openapi.from_url(f"{site.url}/api/openapi.json")
            operations = [result.ok() for result in schema.get_all_operations()]
            checked = 0
            for operation in operations:
                strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

                @given(case=strategy)
                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
                def no_server_error(case) -> None:
                    response = case.call(headers=AUTH)
                    assert response.status_code < 500, (
                        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                    )

                no_server_error()
                checked += 1
            assert checked >= 10 and any(o.path == "/api/sends" for o in operations)
    finally:
        database.close()


def test_healthz_reports_what_the_service_reports(tmp_path):
    """/healthz over the real Service.status(): the lease holder and a process standing by for it are
    healthy; a process whose lease heartbeat has stopped is not (503)."""
    leader = Service(web_settings(tmp_path), environ=ENVIRON)
    standby = Service(web_settings(tmp_path), environ=ENVIRON)
    try:
        for service in (leader, standby):
            service.open()
            service.start_scheduler()  # the first heartbeat is taken at once: the leader holds the lease
        with serve(tmp_path, build=False, scheduler_status=leader.status) as site:
            health = httpx.get(f"{site.url}/healthz")
            assert health.status_code == 200 and health.json()["scheduler"]["state"] == "running"
            assert health.json()["scheduler"]["lease"]["this_process"] is True
        with serve(tmp_path, build=False, scheduler_status=standby.status) as site:
            health = httpx.get(f"{site.url}/healthz")
            assert health.status_code == 200 and health.json()["scheduler"]["state"] == "standby"
            assert health.json()["scheduler"]["lease"]["this_process"] is False
            assert standby.keeper is not None
            standby.keeper.stop()  # its heartbeat is gone: it would never take over
            health = httpx.get(f"{site.url}/healthz")
            assert health.status_code == 503 and health.json()["scheduler"]["running"] is False
    finally:
        standby.close()
        leader.close()

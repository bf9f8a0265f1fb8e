"""The operators' admin API (/api/deliveries, /api/campaigns) and the console's import, export, edit and
send pages, over real HTTP with a real SMTP server."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from tests.console_helpers import console_site
from tests.outbox_support import add_subscribers, open_db
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)
from tests.test_web_console import csrf_of, sign_in
from tests.web_helpers import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def site(tmp_path, smtp_server):
    server = smtp_server()
    with console_site(tmp_path, server.port) as (url, components):
        database = open_db(components.settings.database.url)
        yield url, components, server, database
        database.close()


def wait(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_requeue_through_the_api(site):
    url, components, server, database = site
    people = add_subscribers(database, 2, categories=("city",), now=datetime.now(UTC))
    server.faults.rcpt(people[0].email, 550, times=1)
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as api:
        assert httpx.post(f"{url}/api/deliveries/requeue", json={"run_id": 1}).status_code == 401
        run_id = api.post("/api/sends", json={"categories": ["city"]}).json()["run_id"]
        wait(lambda: api.get(f"/api/sends/{run_id}").json()["status"] == "finished")
        dry = api.post("/api/sends", json={"categories": ["city"], "dry_run": True}).json()
        # reader1 has nothing new since their digest; reader0's failed digest is held, with how to requeue it.
        assert dry["recipients"] == [] and [n["email"] for n in dry["not_sent"]] == [people[0].email]
        assert "requeue it with `syndicate deliveries requeue --id 1`" in dry["not_sent"][0]["why"]
        groups = api.get("/api/deliveries/failures").json()["groups"]
        assert len(groups) == 1 and groups[0]["count"] == 1 and "550" in groups[0]["reply"]
        assert api.post("/api/deliveries/requeue", json={}).status_code == 422
        body = api.post("/api/deliveries/requeue", json={"reply": groups[0]["reply"], "reason": "fixed"}).json()
        assert len(body["requeued"]) == 1 and body["runs"] == [run_id] and body["left_failed"] == []
        wait(lambda: len(server.received) == 2)
        assert Counter(m.recipients[0] for m in server.received) == {people[0].email: 1, people[1].email: 1}


def test_campaigns_through_the_api(site):
    url, components, server, database = site
    people = add_subscribers(database, 2, categories=("science",), now=datetime.now(UTC))
    add_subscribers(database, 1, categories=("sport",), now=datetime.now(UTC), start=5)
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as api:
        bad = api.post("/api/campaigns", json={"subject": "Hi", "body": "x", "categories": ["knitting"]})
        assert bad.status_code == 422 and bad.json()["field"] == "categories"
        created = api.post("/api/campaigns", json={"subject": "Hi", "body": "Hello *all*", "categories": ["science"]})
        assert created.status_code == 201 and created.json()["status"] == "draft"
        assert "<em>all</em>" in api.get("/api/campaigns/1/preview").text
        test = api.post("/api/campaigns/1/test", json={"to": "editor@example.org"}).json()
        assert test["result"]["outcome"] == "sent"
        sent = api.post("/api/campaigns/1/send", json={})
        assert sent.status_code == 202
        wait(lambda: api.get("/api/campaigns/1").json()["status"] == "sent")
        assert api.get("/api/campaigns/1").json()["counts"]["sent"] == 2
        assert api.post("/api/campaigns/1/send", json={}).status_code == 409
        assert api.get("/api/campaigns/99").status_code == 404
    assert sorted(m.recipients[0] for m in server.received) == sorted(["editor@example.org", *(p.email for p in people)])


def test_console_import_dry_run_then_import_and_export(site):
    url, components, server, database = site
    add_subscribers(database, 1, categories=("city",), now=datetime.now(UTC))
    upload = "email,name,categories\nreader0@example.org,Known,city\nnew@example.org,New One,science\nnot-an-address,,\n"
    with httpx.Client(base_url=url, timeout=30) as client:
        sign_in(client)
        page = client.post("/admin/subscribers/import", data={"csrf": csrf_of(client), "mode": "plain"},
                           files={"file": ("people.csv", upload.encode(), "text/csv")})
        assert page.status_code == 200
        assert "Would add 1, already present 1, opted out 0, refused 1." in page.text
        assert "would be added" in page.text and "already present (active): left as it is" in page.text
        assert "not a valid address" in page.text
        assert components.store.find_by_email("new@example.org") is None  # a dry run writes nothing
        done = client.post("/admin/subscribers/import", data={"csrf": csrf_of(client), "mode": "plain", "confirm": "yes",
                                                              "text": upload})
        assert done.status_code == 303 and "Imported%3A+1+added" in done.headers["location"]
        new = components.store.get_by_email("new@example.org")
        assert new.status.value == "pending" and new.source == "import"
        export = client.get("/admin/subscribers/export.csv")
        rows = list(csv.DictReader(io.StringIO(export.text)))
        assert [r["email"] for r in rows] == ["reader0@example.org", "new@example.org"]
        # Edit, with the change in the subscriber's history.
        edit = client.post(f"/admin/subscribers/{new.id}", data={"csrf": csrf_of(client), "name": "Renamed",
                                                                 "categories": ["city"], "frequency": "weekly",
                                                                 "send_hour": "9", "timezone": "UTC", "weekday": "friday"})
        assert edit.status_code == 303 and "Saved." in edit.headers["location"].replace("+", " ")
        page = client.get(f"/admin/subscribers/{new.id}").text
        assert "subscriber.edit by console:admin (changed name, categories, frequency, timezone, send_hour, weekday)" in page
        assert "New One" not in page  # the log keeps which fields changed, not their values
        bad = client.post(f"/admin/subscribers/{new.id}", data={"csrf": csrf_of(client), "timezone": "Mars/Olympus"})
        assert bad.status_code == 422 and "unknown timezone" in bad.text


def test_console_send_dry_run_lists_who_and_why_not(site):
    url, components, server, database = site
    people = add_subscribers(database, 2, categories=("city",), now=datetime.now(UTC))
    server.faults.rcpt(people[0].email, 550, times=1)
    with httpx.Client(base_url=url, timeout=30) as client:
        sign_in(client)
        form = {"csrf": csrf_of(client, "/admin/send"), "categories": ["city"]}
        check = client.post("/admin/send/check", data=form)
        assert "2 digests would be sent." in check.text
        assert client.post("/admin/send", data=form).status_code == 422  # not confirmed
        started = client.post("/admin/send", data={**form, "confirm": "yes"})
        assert started.status_code == 303 and started.headers["location"] == "/admin/runs/1"
        wait(lambda: "finished" in client.get("/admin/runs/1/progress").text)
        check = client.post("/admin/send/check", data={**form, "csrf": csrf_of(client, "/admin/send")})
        assert "0 digests would be sent." in check.text
        assert "this digest failed (delivery 1): requeue it" in check.text


def test_console_users_sign_in_with_name_and_password(tmp_path, smtp_server, capsys, monkeypatch):
    import sys

    from syndicate.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse battery staple\n"))
    with pytest.raises(SystemExit) as exit_:
        main(["admin", "hash-password"])
    assert exit_.value.code == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("$argon2id$") and "staple" not in hashed
    server = smtp_server()
    users = {"users": [{"name": "carol", "password_hash": hashed}]}
    with console_site(tmp_path, server.port, admin=users) as (url, components), httpx.Client(base_url=url) as client:
        page = client.get("/admin/login")
        login_csrf = page.text.split('name="login_csrf" value="')[1].split('"')[0]
        wrong = client.post("/admin/login", data={"login_csrf": login_csrf, "name": "carol", "token": "wrong password!"})
        assert wrong.status_code == 401 and "Wrong name or password." in wrong.text
        nobody = client.post("/admin/login", data={"login_csrf": login_csrf, "name": "mallory", "token": "x"})
        assert nobody.status_code == 401
        ok = client.post("/admin/login", data={"login_csrf": login_csrf, "name": "carol",
                                               "token": "correct horse battery staple"})
        assert ok.status_code == 303
        client.post("/admin/logout", data={"csrf": csrf_of(client)})
        entries = [(e.actor, e.action) for e in components.audit.recent()]
        assert entries[:2] == [("console:carol", "console.sign_out"), ("console:carol", "console.sign_in")]

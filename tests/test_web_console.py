"""The console at /admin/ over real HTTP: refused without sign-in on every route, the session cookie,
CSRF on every form, expiry and sign-out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from syndicate.subscribers import new_subscriber
from tests.web_helpers import ADMIN_TOKEN, serve

GET_ROUTES = ["/admin/", "/admin/runs/fragment", "/admin/runs/1", "/admin/runs/1/progress", "/admin/subscribers",
              "/admin/subscribers/export.csv", "/admin/subscribers/import", "/admin/subscribers/1", "/admin/send",
              "/admin/send/frame?subscriber=a@example.org", "/admin/failures", "/admin/campaigns", "/admin/campaigns/1",
              "/admin/campaigns/1/frame"]
POST_ROUTES = ["/admin/logout", "/admin/subscribers/import", "/admin/subscribers/1", "/admin/subscribers/1/unsubscribe",
               "/admin/subscribers/1/erase", "/admin/send/check", "/admin/send", "/admin/failures/requeue",
               "/admin/campaigns", "/admin/campaigns/1/test", "/admin/campaigns/1/send"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def site(tmp_path, clock):
    with serve(tmp_path, build=False, clock=clock) as running:
        store = running.store
        new = new_subscriber("ann@example.org", categories=["main"], valid_categories={"main"}, defaults=store.defaults)
        store.add(new, now=clock(), confirmed=True)
        yield running


def sign_in(client: httpx.Client, token: str = ADMIN_TOKEN) -> httpx.Response:
    page = client.get("/admin/login")
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/admin/login", data={"login_csrf": login_csrf, "token": token, "next": "/admin/"})


def csrf_of(client: httpx.Client, path: str = "/admin/") -> str:
    return re.search(r'name="csrf" value="([0-9a-f]{64})"', client.get(path).text).group(1)


def test_every_console_route_is_refused_without_sign_in(site):
    # Every route the app has under /admin/ (but the sign-in form and the two static assets) is in the lists.
    def flat(routes):  # included routers are wrapped (FastAPI 0.12x: original_router)
        for route in routes:
            inner = getattr(route, "original_router", None)
            yield from flat(inner.routes) if inner is not None else [route]

    routes = {(method, re.sub(r"\{[^}]+\}", "1", route.path)) for route in flat(site.app.routes)
              if getattr(route, "path", "").startswith("/admin/") for method in getattr(route, "methods", ())}
    listed = {("GET", p.split("?")[0]) for p in GET_ROUTES} | {("POST", p) for p in POST_ROUTES}
    public = {("GET", "/admin/login"), ("POST", "/admin/login"), ("GET", "/admin/assets/1"), ("HEAD", "/admin/assets/1")}
    assert {r for r in routes if r[0] != "HEAD"} - public == listed
    with httpx.Client(base_url=site.url) as client:
        for path in GET_ROUTES:
            response = client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/admin/login?next=%2Fadmin%2F"), path
        for path in POST_ROUTES:
            response = client.post(path, data={"csrf": "0" * 64, "sure": "yes", "confirm": "yes", "run_id": "1"})
            assert response.status_code == 401, path
        assert client.get("/admin/login").status_code == 200
    assert site.store.get_by_email("ann@example.org").status.value == "active"  # nothing happened


def test_sign_in_sets_a_strict_httponly_cookie_and_a_wrong_token_is_refused(site):
    with httpx.Client(base_url=site.url) as client:
        assert sign_in(client, "wrong-token").status_code == 401
        response = sign_in(client)
        assert response.status_code == 303 and response.headers["location"] == "/admin/"
        cookie = response.headers["set-cookie"]
        assert "syndicate_admin=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Path=/admin" in cookie and "Secure" not in cookie  # loopback: plain http works
        page = client.get("/admin/")
        assert page.status_code == 200 and "<h1>Dashboard</h1>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/admin/subscribers?q=ANN").text.count("ann@example.org") == 1


def test_forms_need_the_sessions_csrf_token(site):
    ann = site.store.get_by_email("ann@example.org")
    with httpx.Client(base_url=site.url) as client, httpx.Client(base_url=site.url) as other:
        sign_in(client)
        sign_in(other)
        assert client.post(f"/admin/subscribers/{ann.id}/unsubscribe").status_code == 403
        assert client.post(f"/admin/subscribers/{ann.id}/unsubscribe", data={"csrf": csrf_of(other)}).status_code == 403
        assert site.store.get(ann.id).status.value == "active"
        response = client.post(f"/admin/subscribers/{ann.id}/unsubscribe", data={"csrf": csrf_of(client)})
        assert response.status_code == 303
        assert site.store.get(ann.id).status.value == "unsubscribed"
        page = client.get(f"/admin/subscribers/{ann.id}").text
        assert "subscriber.unsubscribe by console:admin" in page


def test_sessions_expire_and_sign_out_ends_them(site, clock):
    with httpx.Client(base_url=site.url) as client:
        sign_in(client)
        assert client.get("/admin/").status_code == 200
        clock.now += timedelta(minutes=479)
        assert client.get("/admin/").status_code == 200
        clock.now += timedelta(minutes=2)  # past [admin] session_minutes (480)
        assert client.get("/admin/").status_code == 303
        sign_in(client)
        cookie = client.cookies.get("syndicate_admin")
        assert client.post("/admin/logout", data={"csrf": csrf_of(client)}).status_code == 303
    with httpx.Client(base_url=site.url, cookies={"syndicate_admin": cookie}) as stolen:
        assert stolen.get("/admin/").status_code == 303  # the old cookie is worth nothing now


def test_sign_in_never_redirects_off_the_console(site):
    with httpx.Client(base_url=site.url) as client:
        page = client.get("/admin/login?next=https://evil.example/")
        assert 'name="next" value="/admin/"' in page.text


def test_cookies_are_secure_when_the_console_is_not_on_loopback(site):
    # Reached by a public name (through a proxy): the browser must only send the cookies over https.
    with httpx.Client(base_url=site.url, headers={"host": "news.example"}) as client:
        page = client.get("/admin/login")
        assert page.status_code == 200 and "Secure" in page.headers["set-cookie"]
    with httpx.Client(base_url=site.url) as client:
        assert "Secure" not in client.get("/admin/login").headers["set-cookie"]


def test_the_dashboard_shows_bounce_and_complaint_rates_and_the_delivery_workers(site, clock):
    from sqlalchemy import insert

    from syndicate.storage.schema import bounce_events

    with site.database.write() as connection:  # one hard bounce and one complaint, as the bounce processor records them
        for kind in ("hard", "complaint"):
            connection.execute(insert(bounce_events).values(
                received_at=clock(), kind=kind, source="pipe", fingerprint=f"test-{kind}", recipient="ann@example.org",
                status_code="5.1.1" if kind == "hard" else None, diagnostic="", method="test", raw=b"", truncated=0))
    with httpx.Client(base_url=site.url) as client:
        sign_in(client)
        page = client.get("/admin/").text
    row = re.search(r"<th scope=\"row\">last 7 days</th>(.*?)</tr>", page, re.S).group(1)
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert cells[1:4] == ["1", "0", "1"]  # hard, soft, complaints
    assert "Mode: inline" in page and "Live workers: 0" in page


def test_a_file_posted_where_a_console_form_expects_text_is_a_clear_answer_never_a_500(site):
    """multipart/form-data lets a client send any field as a file: each text field then reads as
    absent (the form's own errors follow), and nothing fails with a server error."""
    ann = site.store.get_by_email("ann@example.org")
    fields = ["subscriber", "categories", "frequency", "name", "timezone", "send_hour", "weekday", "mode", "text",
              "confirm", "ids", "subject", "body", "to", "run_id", "status"]
    with httpx.Client(base_url=site.url) as client:
        sign_in(client)
        csrf = csrf_of(client)
        for route in POST_ROUTES:
            if route.endswith(("/logout", "/unsubscribe", "/erase")):  # they take no field: the CSRF token is all
                continue
            path = route.replace("/1", f"/{ann.id}") if "subscribers/1" in route else route
            files = [(name, (f"{name}.txt", b"x@example.org", "text/plain")) for name in fields]
            response = client.post(path, data={"csrf": csrf}, files=files)
            assert response.status_code < 500, f"{path}: {response.status_code} {response.text[:300]}"
        stored = site.store.get(ann.id)
        assert (stored.status.value, stored.name) == ("active", ann.name), "nothing was changed by a file for a value"

"""HTTP hardening (issue 12, point 4): 503 with a retry hint while the database is locked, no token in
any log line, redirects that stay on the site, security headers on 413, the CSRF cookie as documented."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.test_cli_faults import locked
from tests.web_helpers import ADMIN_TOKEN, serve

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}

def test_pages_and_api_answer_503_with_retry_after_while_the_database_is_locked(tmp_path):
    with serve(tmp_path, sections={"database": {"busy_timeout": 0.3}}) as site, httpx.Client(base_url=site.url) as client:
        page = client.get("/subscribe")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        database_file = Path(site.settings.database.url.removeprefix("sqlite:///"))
        with locked(database_file):
            signup = client.post("/subscribe", data={"email": "ann@example.org", "categories": ["main"],
                                                     "csrf_token": token})
            api = client.post("/api/subscribers", json={"email": "bob@example.org"}, headers=AUTH)
        assert signup.status_code == 503 and signup.headers["retry-after"] == "30"
        assert "Please try again in a minute" in signup.text and "Traceback" not in signup.text
        assert signup.headers["x-frame-options"] == "DENY"
        assert api.status_code == 503 and api.headers["retry-after"] == "30"
        assert api.json() == {"error": "the database is unavailable; try again shortly"}
        assert site.store.count() == 0
        # Once the lock is gone, the same visitor signs up normally.
        page = client.get("/subscribe")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert client.post("/subscribe", data={"email": "ann@example.org", "categories": ["main"],
                                               "csrf_token": token}).status_code == 200
        assert [str(m["To"]) for m in site.mails()] == ["ann@example.org"]


def test_no_link_token_appears_in_any_log_line(tmp_path, caplog):
    """Sign up, confirm, post the preferences form with a bad CSRF token, unsubscribe: every log line
    (DEBUG and up) is free of the signed tokens, which are good for months."""
    import logging

    from tests.web_helpers import link_in

    caplog.set_level(logging.DEBUG)
    with serve(tmp_path) as site, httpx.Client(base_url=site.url) as client:
        page = client.get("/subscribe")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        client.post("/subscribe", data={"email": "ann@example.org", "categories": ["main"], "csrf_token": token})
        confirm = link_in(site.mails()[0], "confirm")
        confirmed = client.post(confirm.removeprefix(site.url))
        preferences = re.search(r'href="[^"]*(/preferences/[^"]+)"', confirmed.text).group(1)
        refused = client.post(preferences, data={"categories": ["main"], "csrf_token": "forged"})
        assert refused.status_code == 403
        form = client.get(preferences).text
        unsubscribe = re.search(r'action="(/unsubscribe/[^"]+)"', form).group(1)
        assert client.post(unsubscribe).status_code == 200
    tokens = [confirm.rsplit("/", 1)[1], preferences.rsplit("/", 1)[1], unsubscribe.rsplit("/", 1)[1]]
    # Everything the service logged (httpx and httpcore are the test's own client).
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert "form refused: bad or missing CSRF token path=/preferences/<token>" in logged
    for secret in tokens:
        assert secret not in logged


# -- HTTP: redirects stay on the site; refusals carry the security headers; the cookie is what the docs say

def raw_request(url: str, request: bytes) -> tuple[int, dict[str, str]]:
    """Send `request` as bytes (no client normalises the path) and read the status line and headers."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), headers


def test_folder_redirects_only_ever_go_to_a_path_on_this_site(tmp_path):
    with serve(tmp_path) as site:
        for path, expected in (("//feeds", "/feeds/"), ("///feeds", "/feeds/"), ("/feeds", "/feeds/"),
                               ("//articles", "/articles/")):
            status, headers = raw_request(site.url, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert status == 301 and headers["location"] == expected, (path, headers)


def test_413_carries_the_security_headers(tmp_path):
    with serve(tmp_path) as site:
        limit = site.settings.http.max_body_bytes
        announced = raw_request(site.url, (f"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n"
                                           "Content-Type: application/x-www-form-urlencoded\r\n\r\n").encode())
        chunk = b"x" * (limit + 1)
        streamed = raw_request(site.url, b"POST /subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                               + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
    for status, headers in (announced, streamed):
        assert status == 413
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer" and "default-src 'none'" in headers["content-security-policy"]


def test_the_csrf_cookie_is_what_the_security_notes_say(tmp_path):
    import syndicate.web.security as security

    with serve(tmp_path) as site:
        cookie = httpx.get(f"{site.url}/subscribe").headers["set-cookie"].lower()
    assert "samesite=lax" in cookie and "httponly" in cookie
    assert "SameSite=Lax, HttpOnly cookie" in security.__doc__ and "SameSite=Strict" not in security.__doc__

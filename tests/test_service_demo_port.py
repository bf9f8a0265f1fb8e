"""`syndicate run --port` (and `make demo PORT=...`) move the demo's loopback links to the bound port."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from syndicate.config import load_settings
from syndicate.service import Bound, with_bound_port
from tests.service_helpers import RunningService, write_config


def _bound(port: int) -> Bound:
    return Bound(socket.socket(), "127.0.0.1", port)


def test_only_a_loopback_base_url_follows_the_port(tmp_path):
    settings = load_settings(write_config(tmp_path))
    bound = _bound(8150)
    try:
        assert with_bound_port(settings, bound).site.base_url == "http://127.0.0.1:8150"
        public = settings.model_copy(update={"site": settings.site.model_copy(update={"base_url": "https://news.example"})})
        assert with_bound_port(public, bound) is public
        local = settings.model_copy(update={"site": settings.site.model_copy(update={"base_url": "http://localhost:8000/news"})})
        assert with_bound_port(local, bound).site.base_url == "http://localhost:8150/news"
    finally:
        bound.sock.close()


@pytest.mark.slow  # a real service process: ~3 s
def test_links_in_pages_and_emails_lead_to_the_bound_port(tmp_path):
    config = write_config(tmp_path)  # base_url = "http://127.0.0.1:8000", served on a free port
    with RunningService(config) as service:
        base = service.base_url
        assert not base.endswith(":8000")
        token = service.wait_for(r"Authorization: Bearer (\S+)").group(1)
        with urllib.request.urlopen(f"{base}/feeds/all.rss.xml", timeout=10) as response:
            feed = response.read().decode()
        assert f"<link>{base}/" in feed and "127.0.0.1:8000" not in feed
        request = urllib.request.Request(
            f"{base}/api/subscribers", method="POST", data=json.dumps({"email": "ann@example.org"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201 and json.loads(response.read())["source"] == "api"
        assert "links in emails point at" not in service.output
        assert service.terminate() == 0
    mails = [p.read_bytes() for p in (tmp_path / "var" / "outbox").rglob("*") if p.is_file()]
    assert len(mails) == 1 and f"{base}/confirm/".encode() in mails[0].replace(b"=\r\n", b"")

"""The HTTP app served for real: settings over a temporary folder, uvicorn in a thread on 127.0.0.1
(a port of its own), and the confirmation mails read back from the file backend's Maildir."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import uvicorn

from syndicate.config import Settings, settings_from_mapping
from syndicate.site._build import build_site
from syndicate.storage._database import Database, open_database
from syndicate.subscribers._store import SubscriberStore
from syndicate.web.app import create_app
from syndicate.wiring import Components, build_settings, content_source

REPO = Path(__file__).resolve().parent.parent
SECRET = "test-link-secret-0123456789abcdef"
ADMIN_TOKEN = "test-admin-token-0123456789abcdefgh"
ENVIRON = {"SYNDICATE_SECRET": SECRET, "SYNDICATE_ADMIN_TOKEN": ADMIN_TOKEN}


def web_settings(tmp_path: Path, base_url: str = "http://127.0.0.1:8000", **sections: dict[str, Any]) -> Settings:
    """Settings over the repository's sample content, with output, database and mail under tmp_path."""
    data: dict[str, Any] = {
        "site": {"base_url": base_url, "timezone": "Europe/Paris"},
        "content": {"folder": str(REPO / "content"), "cache": str(tmp_path / "var" / "cache" / "articles.pickle")},
        "categories": {"main": {"title": "Main"}},
        "output": {"folder": str(tmp_path / "public")},
        "database": {"url": f"sqlite:///{tmp_path / 'var' / 'syndicate.db'}"},
        "mail": {"backend": "file", "folder": str(tmp_path / "outbox")},
        "logging": {"level": "WARNING"},
        # The tests post forms the moment they are served; the robot timing check has tests of its own.
        "signup": {"min_form_seconds": 0},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return settings_from_mapping(data)


@dataclass
class RunningSite:
    settings: Settings
    url: str
    app: Any
    database: Database

    @property
    def outbox(self) -> Path:
        return self.settings.mail.folder

    def mails(self) -> list[EmailMessage]:
        """The mails delivered so far, once the app's background work (confirmation emails) is done."""
        self.app.state.runner.wait_idle()
        return mails(self.outbox)

    @property
    def store(self) -> SubscriberStore:
        """The subscribers as the app sees them (through a connection of the test's own)."""
        return SubscriberStore(self.database)


@contextmanager
def serve(tmp_path: Path, *, build: bool = True, environ: dict[str, str] | None = None,
          sections: dict[str, dict[str, Any]] | None = None, **app_options: Any) -> Iterator[RunningSite]:
    """Build the sample site and serve the app with uvicorn on a free port until the block ends
    (`sections`: config sections merged over web_settings' own)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = web_settings(tmp_path, base_url=url, **(sections or {}))
    if build:
        assert build_site(build_settings(settings), content_source(settings)).ok
    components = Components(settings, environ=environ or ENVIRON, database=app_options.pop("database", None))
    app = create_app(components, **app_options)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", proxy_headers=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    database = open_database(settings.database)
    try:
        yield RunningSite(settings, url, app, database)
    finally:
        database.close()
        server.should_exit = True
        thread.join(10)
        sock.close()
        components.close()


def mails(outbox: Path) -> list[EmailMessage]:
    """Every message the file backend delivered, oldest first."""
    files = sorted((outbox / "new").glob("*.eml")) if (outbox / "new").is_dir() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]  # type: ignore[misc]


def link_in(message: EmailMessage, kind: str) -> str:
    """The first `kind` link (confirm, preferences, unsubscribe) in the message's text."""
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(rf"https?://\S+/{kind}/\S+", body.get_content())
    assert found, f"no {kind} link in:\n{body.get_content()}"
    return found.group(0)

"""The app with SMTP delivery served for real (uvicorn in a thread on a free port): for the console and
operators' API tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import uvicorn

from syndicate.web.app import create_app
from syndicate.wiring import Components
from tests.outbox_support import write_site
from tests.web_helpers import ENVIRON, web_settings


@contextmanager
def console_site(tmp_path: Path, smtp_port: int, **sections: dict) -> Iterator[tuple[str, Components]]:
    """The app over SMTP delivery, on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    content = write_site(tmp_path, now=datetime.now(UTC))
    settings = web_settings(
        tmp_path, base_url=url,
        content={"folder": str(content)}, categories={},
        mail={"backend": "smtp", "from": "Test Times <digest@news.example>", "domain": "news.example"},
        smtp={"host": "127.0.0.1", "port": smtp_port, "security": "none", "connections": 1, "timeout": 5},
        outbox={"max_attempts": 1}, **sections,
    )
    components = Components(settings, environ=ENVIRON)
    app = create_app(components, delivery=components.delivery)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield url, components
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        components.close()



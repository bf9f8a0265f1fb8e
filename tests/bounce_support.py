"""Shared pieces of the deliverability tests: a configured site with VERP on, and bounces shaped like a real MTA's."""

from __future__ import annotations

import email
import email.policy
import io
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn

from syndicate.cli import main
from syndicate.web.app import create_app
from syndicate.wiring import Components
from tests.outbox_support import SECRET, open_db, write_site
from tests.web_helpers import web_settings

RETURN_PATH = "bounce+{token}@news.example"
UNSUBSCRIBE = "unsubscribe+{token}@news.example"


def write_config(tmp_path: Path, url: str, port: int, extra: str = "") -> Path:
    config = tmp_path / "syndicate.toml"
    config.write_text(
        f'[site]\nbase_url = "https://news.example"\ntitle = "Test Times"\n'
        f'[content]\nfolder = "{tmp_path / "content"}"\ncache = "{tmp_path / "cache" / "articles.pickle"}"\n'
        f'[database]\nurl = "{url}"\n'
        f'[mail]\nbackend = "smtp"\nfrom = "Test Times <digest@news.example>"\ndomain = "news.example"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nconnections = 2\n'
        f'[logging]\nlevel = "WARNING"\n'
        f'[bounces]\nreturn_path = "{RETURN_PATH}"\nunsubscribe_address = "{UNSUBSCRIBE}"\n' + extra,
        encoding="utf-8",
    )
    return config


@pytest.fixture
def env(tmp_path, smtp_server, capsys, monkeypatch):
    """(run, server, database, config): `run(*args, stdin=b"")` runs the CLI, returns (exit code, stdout, stderr)."""
    for name, value in SECRET.items():
        monkeypatch.setenv(name, value)
    server = smtp_server(strict=True)
    write_site(tmp_path, now=datetime.now(UTC))
    url = f"sqlite:///{tmp_path / 'syndicate.db'}"
    config = write_config(tmp_path, url, server.port)
    database = open_db(url)

    def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = 0
        try:
            main(["--config", str(config), *args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run, server, database, config
    database.close()


def dsn(verp: str, recipient: str, status: str = "5.1.1", action: str = "failed", diagnostic: str = "User unknown") -> bytes:
    """A Postfix delivery status notification for a message sent with envelope sender `verp`."""
    return (
        f"Return-Path: <>\nDelivered-To: {verp}\nDate: Mon,  4 Mar 2024 08:00:12 +0000 (UTC)\n"
        f"From: MAILER-DAEMON@mx.news.example (Mail Delivery System)\nSubject: Undelivered Mail Returned to Sender\n"
        f"To: {verp}\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\n\tboundary="QID.1/mx.news.example"\n\n'
        f"--QID.1/mx.news.example\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n"
        f"<{recipient}>: host mx.example.org[192.0.2.25] said: 550 {status} {diagnostic}\n\n"
        f"--QID.1/mx.news.example\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mx.news.example\n\nFinal-Recipient: rfc822; {recipient}\nOriginal-Recipient: rfc822;{recipient}\n"
        f"Action: {action}\nStatus: {status}\nDiagnostic-Code: smtp; 550 {status} {diagnostic}\n\n"
        f"--QID.1/mx.news.example--\n"
    ).encode()


def arf(verp: str, recipient: str) -> bytes:
    """A Yahoo-style ARF complaint about the message sent with envelope sender `verp`."""
    return (
        f"From: feedback@arf.mail.yahoo.com\nTo: abuse@news.example\nSubject: FW: digest\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="b1"\n\n'
        f"--b1\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
        f"--b1\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: Yahoo!-Mail-Feedback/2.0\n"
        f"Version: 0.1\nOriginal-Mail-From: <{verp}>\nOriginal-Rcpt-To: <{recipient}>\n\n"
        f"--b1\nContent-Type: text/rfc822-headers\n\nFrom: Test Times <digest@news.example>\nTo: {recipient}\n\n--b1--\n"
    ).encode()


def sent_to(server, address: str):
    """The last message the SMTP server received for `address`, parsed, with its envelope sender."""
    received = [r for r in server.received if r.recipients == (address,)][-1]
    return received.sender, email.message_from_bytes(received.data, policy=email.policy.default)


@contextmanager
def serve_app(tmp_path: Path, environ: dict[str, str], **sections: dict) -> Iterator[tuple[str, Components]]:
    """The HTTP app with `sections` added to the web test settings, served by uvicorn on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = web_settings(tmp_path, base_url=url, **sections)
    components = Components(settings, environ=environ)
    app = create_app(components)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield url, components
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        components.close()

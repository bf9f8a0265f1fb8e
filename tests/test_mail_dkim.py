"""DKIM: every message that goes out (digests, confirmations, test copies) is signed over the exact bytes
sent, and the signature survives the SMTP path: dkimpy's verifier checks what aiosmtpd received against
the DNS record `syndicate dkim keygen` printed."""

from __future__ import annotations

import io
import re
import sys
from datetime import UTC, datetime

import dkim
import pytest

from syndicate.cli import main
from syndicate.config import load_settings
from syndicate.errors import ConfigError
from syndicate.mail import OutgoingMessage, make_backend
from tests.bounce_support import write_config
from tests.outbox_support import SECRET, add_subscribers, open_db, write_site
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)


def txt_of(record: str) -> bytes:
    """The TXT value of a zone-file line `sel._domainkey.dom. IN TXT ( "..." "..." )`."""
    return "".join(re.findall(r'"([^"]*)"', record)).encode()


@pytest.fixture(params=[("rsa-sha256", "simple"), ("ed25519-sha256", "simple"), ("rsa-sha256", "relaxed")],
                ids=["rsa-simple", "ed25519-simple", "rsa-relaxed"])
def signed_env(request, tmp_path, smtp_server, capsys, monkeypatch):
    algorithm, body = request.param
    for name, value in SECRET.items():
        monkeypatch.setenv(name, value)
    server = smtp_server(strict=True)
    write_site(tmp_path, now=datetime.now(UTC))
    url = f"sqlite:///{tmp_path / 'syndicate.db'}"
    key = tmp_path / "keys" / "dkim.pem"
    config = write_config(tmp_path, url, server.port, extra=(
        f'[dkim]\ndomain = "news.example"\nselector = "s2026"\nprivate_key_file = "{key}"\nalgorithm = "{algorithm}"\n'
        f'body_canonicalization = "{body}"\n'))

    def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            main(["--config", str(config), *args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = run("dkim", "keygen")
    assert code == 0, err
    assert out.startswith("s2026._domainkey.news.example. IN TXT") and key.stat().st_mode & 0o077 == 0
    record = txt_of(out)
    kind = b"k=rsa" if algorithm == "rsa-sha256" else b"k=ed25519"
    assert record.startswith(b"v=DKIM1; " + kind + b"; p=")
    database = open_db(url)
    yield run, server, database, config, record
    database.close()


def dns_for(record: bytes):
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"s2026._domainkey.news.example." else None
    return lookup


def test_digests_and_confirmations_arrive_with_a_signature_dkimpy_verifies(signed_env):
    run, server, database, config, record = signed_env
    add_subscribers(database, 3, now=datetime.now(UTC))
    assert run("send", "--yes")[0] == 0
    code, _, err = run("subscribers", "add", "new@example.org", "--categories", "city")
    assert code == 0, err
    assert len(server.received) == 4
    for received in server.received:
        assert received.data.startswith(b"DKIM-Signature: v=1; a=")
        assert dkim.verify(received.data, dnsfunc=dns_for(record)), received.recipients
        tampered = received.data.replace(b"Subject: ", b"Subject: Re: ", 1)
        assert not dkim.verify(tampered, dnsfunc=dns_for(record))
        body_at = received.data.index(b"\r\n\r\n") + 300
        changed = bytes([received.data[body_at] ^ 1]) if received.data[body_at] not in b"\r\n" else b"X"
        assert not dkim.verify(received.data[:body_at] + changed + received.data[body_at + 1:], dnsfunc=dns_for(record))


def test_the_signature_survives_dot_stuffing_and_awkward_lines(signed_env):
    run, server, database, config, record = signed_env
    settings = load_settings(config)
    body = (b"From: Test Times <digest@news.example>\r\nTo: a@example.org\r\nSubject: dots\r\n"
            b"Date: Mon, 4 Mar 2024 08:00:00 +0000\r\nMessage-ID: <dots@news.example>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
            b".leading dot\r\n..two dots\r\n.\r\ntrailing spaces   \r\n\ttab line\r\n\r\n\r\n")
    message = OutgoingMessage("k1", "digest@news.example", ("a@example.org",), body, "<dots@news.example>")
    backend = make_backend(settings.mail, settings.smtp, dkim=settings.dkim, environ=dict(SECRET))
    [result] = list(backend.send_messages([message]))
    assert result.outcome == "sent", result.reply
    [received] = server.received
    assert received.data.endswith(body[body.index(b"\r\n\r\n"):]), "the server got the bytes we signed"
    assert dkim.verify(received.data, dnsfunc=dns_for(record))


def test_a_missing_or_wrong_key_file_is_a_clear_error(tmp_path):
    write_site(tmp_path)
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", 2525,
                          extra=f'[dkim]\ndomain = "news.example"\nprivate_key_file = "{tmp_path / "nope.pem"}"\n')
    settings = load_settings(config)
    with pytest.raises(ConfigError, match="private_key_file: cannot read"):
        make_backend(settings.mail, settings.smtp, dkim=settings.dkim)
    (tmp_path / "nope.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM private key"):
        make_backend(settings.mail, settings.smtp, dkim=settings.dkim)

"""Debian's Dovecot as a throwaway IMAP server on 127.0.0.1 for tests: a config of its own under a
temporary folder, one user with a password, plain IMAP on a free port. `dovecot_server` is a fixture
factory; it skips with the reason when Dovecot is missing (tests/setup.sh installs dovecot-imapd)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "mailbox-password-1"


@dataclass
class Dovecot:
    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_dovecot(folder: Path) -> Dovecot:
    if not os.path.exists(DOVECOT):
        pytest.skip("Dovecot is not installed (tests/setup.sh installs Debian's dovecot-imapd as root)")
    root = os.geteuid() == 0
    # Dovecot never gives a mailbox to root: as root the mail belongs to nobody; otherwise to us.
    owner = pwd.getpwnam("nobody") if root else pwd.getpwuid(os.geteuid())
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    home = folder / "home"
    home.mkdir(exist_ok=True)
    if root:
        os.chown(home, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    (folder / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    me = pwd.getpwuid(os.geteuid()).pw_name
    login_user = "dovenull" if root else me
    internal_user = "dovecot" if root else me
    config = folder / "dovecot.conf"
    config.write_text(f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
info_log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {"dovecot" if root else pwd.getpwuid(os.geteuid()).pw_name}
first_valid_uid = {owner.pw_uid}
last_valid_uid = {owner.pw_uid}
mail_location = maildir:{home}/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={home}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")
    if not root:
        (folder / "passwd").chmod(0o600)
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (folder / "dovecot.log").read_text() if (folder / "dovecot.log").exists() else ""
            pytest.skip(f"Dovecot would not start here: {process.stderr.read().decode()[-500:] if process.stderr else ''} {log[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(100).startswith(b"* OK"):
                    return Dovecot(port, folder, process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    pytest.skip("Dovecot did not answer on its port within 15 s")


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    # Not under tmp_path: Dovecot's unprivileged processes must be able to reach the folder (pytest's is 0700).
    folder = Path(tempfile.mkdtemp(prefix="syndicate-dovecot-"))
    folder.chmod(0o755)
    try:
        server = start_dovecot(folder / "server")
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

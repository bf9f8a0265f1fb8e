"""`syndicate worker` processes for tests: a workers-mode config, a worker subprocess with its log gathered, outbox counts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from syndicate.storage.schema import deliveries
from tests.outbox_support import SECRET

ROOT = Path(__file__).resolve().parent.parent
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.M)


def worker_config(root: Path, url: str, port: int, *, smtp: str = "", outbox: str = "", mode: str = "workers",
                  connections: int = 16) -> Path:
    """A config sending to 127.0.0.1:port with [delivery] mode = `mode` (content under root/content)."""
    config = root / "syndicate.toml"
    config.write_text(
        f'[site]\nbase_url = "https://news.example"\ntitle = "Worker Times"\n'
        f'[content]\nfolder = "{root / "content"}"\ncache = "{root / "cache" / "articles.pickle"}"\n'
        f'[output]\nfolder = "{root / "public"}"\n'
        f'[database]\nurl = "{url}"\n'
        f'[mail]\nbackend = "smtp"\nfrom = "Worker Times <digest@news.example>"\ndomain = "news.example"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nconnections = {connections}\ntimeout = 10\n{smtp}\n'
        f'[outbox]\nclaim_timeout = 3\n{outbox}\n'
        f'[delivery]\nmode = "{mode}"\n'
        f'[logging]\nlevel = "INFO"\n',
        encoding="utf-8",
    )
    return config


class WorkerProcess:
    """`python -m syndicate --config CONFIG worker ARGS...`, its stderr gathered line by line."""

    def __init__(self, config: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "syndicate", "--config", str(config), "worker", *args],
            cwd=ROOT, env={**os.environ, **SECRET}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.process.poll() is not None:
                time.sleep(0.2)
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s; log:\n{self.log[-3000:]}")

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._reader.join(5)


def statuses(database) -> Counter:
    with database.read() as connection:
        return Counter(connection.execute(select(deliveries.c.status)).scalars().all())


def wait_until(condition, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def message_ids(received) -> Counter:
    """How many times each Message-ID reached the server."""
    return Counter(MESSAGE_ID.search(r.data).group(1) for r in received)

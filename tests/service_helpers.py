"""Running `syndicate run` as a real subprocess in tests: a config under tmp_path and a process whose
output is collected line by line, with bounded waits."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def write_config(folder: Path, *, database_url: str | None = None, content: Path | None = None, extra: str = "") -> Path:
    """The demo configuration, with var/ and public/ under `folder` and (unless `content` is given)
    the repository's sample content."""
    config = folder / "config" / "syndicate.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    url = database_url or "sqlite:///../var/syndicate.db"
    config.write_text(
        f"""[site]
title = "Test Site"
base_url = "http://127.0.0.1:8000"
timezone = "Europe/Paris"

[content]
folder = "{content or REPO / 'content'}"
cache = "../var/cache/articles.pickle"

[output]
folder = "../public"

[database]
url = "{url}"

[mail]
backend = "file"
folder = "../var/outbox"

[http]
generate_missing_secrets = true
{extra}""",
        encoding="utf-8",
    )
    return config


class RunningService:
    """`python -m syndicate --config CONFIG run --port 0 ARGS...`, its stdout and stderr gathered."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
        environ.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "syndicate", "--config", str(config), "run", "--port", "0", *args],
            cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._collect, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._collect, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first match of `pattern` in the output; AssertionError (with the output) after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the readers drain
                found = re.search(pattern, self.output)
                if found:
                    return found
                raise AssertionError(f"process exited {self.process.returncode} before {pattern!r}:\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.output}")

    @property
    def base_url(self) -> str:
        return self.wait_for(r"syndicate is running on (http://[^\s/]+)").group(1)

    def terminate(self, timeout: float = 20.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

"""The wheel an operator installs: built from the tree, installed into a fresh virtual environment
outside the repository, it builds a site, previews a digest and serves pages from an empty folder."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

CONFIG = """\
[site]
title = "Wheel Test"
base_url = "http://127.0.0.1:8000"
timezone = "UTC"

[categories.news]
title = "News"

[database]
url = "sqlite:///var/syndicate.db"

[mail]
backend = "file"
folder = "var/outbox"

[http]
host = "127.0.0.1"
port = 0

[logging]
level = "INFO"
"""

ARTICLE = """\
---
title: The First Article
date: 2026-11-19T16:40:00Z
author: Ann Author
categories: [News]
---
A body with **bold** text, installed from a wheel.
"""


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `syndicate` command of a fresh virtual environment holding only the built wheel and its dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)], root, env)
    wheel = next(dist.glob("syndicate-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("syndicate/templates/email/digest.html.j2", "syndicate/templates/site/article.html.j2",
                    "syndicate/templates/pages/signup.html.j2", "syndicate/storage/migrations/versions/0001_subscribers.py"):
        assert shipped in names, f"{shipped} is missing from the wheel"
    target = root / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    # This pip installs into the new environment (`--python`): quicker than bootstrapping a pip there first.
    _run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "-q", str(wheel)], root, env,
         timeout=600)
    return target / "bin" / "syndicate"


def test_the_installed_wheel_builds_previews_and_serves_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "content").mkdir(parents=True)
    (site / "syndicate.toml").write_text(CONFIG)
    (site / "content" / "first.md").write_text(ARTICLE)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(SYNDICATE_SECRET="wheel-test-secret-0123456789abcdefghij", SYNDICATE_CONFIG=str(site / "syndicate.toml"))

    _run([str(installed), "build"], site, env)
    assert "The First Article" in (site / "public" / "feeds" / "news.atom.xml").read_text()

    eml = _run([str(installed), "preview", "--categories", "news", "--since", "2026-01-01", "--format", "eml"], site, env).stdout
    assert "Subject:" in eml and "The First Article" in eml

    server = subprocess.Popen([str(installed), "run", "--no-scheduler"], cwd=site, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = None
        deadline = time.monotonic() + 60
        assert server.stdout is not None
        while base is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line and server.poll() is not None:
                break
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            base = found.group(1) if found else None
        assert base is not None, "the service did not say where it listens"
        with httpx.Client(base_url=base, timeout=10) as client:
            page = client.get("/")
            assert page.status_code == 200 and "The First Article" in page.text
            feed = client.get("/feeds/news.rss.xml")
            assert feed.status_code == 200 and "The First Article" in feed.text
            signup = client.get("/subscribe")
            assert signup.status_code == 200 and "<form" in signup.text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)

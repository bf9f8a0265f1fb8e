"""Requests per second for feed responses (200 and 304) with wrk: `syndicate run` against nginx
serving the same public/ folder, side by side in one run.

    python bench/bench_http.py [--duration 10] [--connections 32] [--threads 2]

Writes a configuration into a temporary folder (the sample content, SQLite, the file mail
backend, log level WARNING), starts `python -m syndicate --config ... run --port N` as a real
process (it builds public/, takes the scheduler lease and serves; the scheduler runs its jobs as
usual) and nginx (one worker process) on the public/ folder that process built, then runs wrk
against each. Needs the Debian packages wrk and nginx (or nginx-light).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent

FEED = "/feeds/all.rss.xml"
ENV = {"SYNDICATE_SECRET": "bench-secret-0123456789abcdef", "SYNDICATE_ADMIN_TOKEN": "bench-admin-token"}

NGINX_CONF = """
worker_processes 1;
user root;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    include /etc/nginx/mime.types;
    types {{ application/rss+xml rss.xml; application/atom+xml atom.xml; text/x-opml opml; }}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        etag on;
        add_header Cache-Control "public, max-age=300";
    }}
}}
"""

CONFIG = """
[site]
title = "Bench Times"
base_url = "http://127.0.0.1:{port}"
timezone = "Europe/Paris"

[content]
folder = "{content}"
cache = "{tmp}/var/cache/articles.pickle"

[output]
folder = "{tmp}/public"

[database]
url = "sqlite:///{tmp}/var/syndicate.db"

[mail]
backend = "file"
folder = "{tmp}/var/outbox"

[logging]
level = "WARNING"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def wrk(url: str, args: argparse.Namespace, headers: dict[str, str]) -> tuple[float, str]:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p99 = re.search(r"99%\s+(\S+)", output).group(1)
    return rate, p99


def measure(name: str, base: str, args: argparse.Namespace) -> dict[str, tuple[float, str]]:
    first = httpx.get(base + FEED)
    assert first.status_code == 200 and "etag" in first.headers, f"{name}: no ETag on {FEED}"
    check = httpx.get(base + FEED, headers={"if-none-match": first.headers["etag"]})
    assert check.status_code == 304, f"{name}: the ETag does not give 304"
    return {
        "200": wrk(base + FEED, args, {}),
        "304": wrk(base + FEED, args, {"If-None-Match": first.headers["etag"]}),
    }


def model_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is not installed: apt-get install -y wrk nginx-light")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        os.chmod(tmp, 0o755)
        app_port, nginx_port = free_port(), free_port()
        config = tmp / "syndicate.toml"
        config.write_text(CONFIG.format(port=app_port, content=REPO / "content", tmp=tmp), encoding="utf-8")
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port, root=tmp / "public"))
        command = [sys.executable, "-m", "syndicate", "--config", str(config), "run", "--port", str(app_port)]
        app = subprocess.Popen(command, cwd=REPO, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL)
        nginx = None
        try:
            wait_for(f"http://127.0.0.1:{app_port}{FEED}")  # `syndicate run` has built public/ by now
            health = httpx.get(f"http://127.0.0.1:{app_port}/healthz").json()
            assert health["scheduler"]["state"] == "running", f"the scheduler is not running: {health}"
            nginx = subprocess.Popen(["/usr/sbin/nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
            wait_for(f"http://127.0.0.1:{nginx_port}{FEED}")
            size = len(httpx.get(f"http://127.0.0.1:{app_port}{FEED}").content)
            ours = measure("app", f"http://127.0.0.1:{app_port}", args)
            theirs = measure("nginx", f"http://127.0.0.1:{nginx_port}", args)
        finally:
            load_after = os.getloadavg()
            app.terminate()
            exit_code = app.wait(20)
            if nginx is not None:
                nginx.terminate()
                nginx.wait(10)
    print(f"machine: {os.cpu_count()} CPUs, {model_name()}, Python {platform.python_version()}")
    print(f"load average (1, 5, 15 min): before {fmt_load(load_before)}, after {fmt_load(load_after)}")
    print(f"app: {' '.join(command[1:])} (python -m syndicate ... run; exit code {exit_code} on SIGTERM)")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency {FEED} ({size} bytes, no gzip)")
    print(f"{'response':<10}{'app req/s':>12}{'app p99':>10}{'nginx req/s':>14}{'nginx p99':>11}{'app/nginx':>11}")
    for kind in ("200", "304"):
        (rate, p99), (base_rate, base_p99) = ours[kind], theirs[kind]
        print(f"{kind:<10}{rate:>12,.0f}{p99:>10}{base_rate:>14,.0f}{base_p99:>11}{rate / base_rate:>11.2f}")


if __name__ == "__main__":
    main()

"""An SMTP sink that answers every command after a fixed delay (a remote relay), counting Message-IDs.

    python bench/smtp_delay_sink.py --port 2526 --delay 0.02 --report counts.json

Each reply leaves `delay` seconds after its command (or the end of its message) arrived; commands
that arrive together (PIPELINING) are answered together, as a relay one round trip away would.
Accepts every message. On SIGTERM it writes {Message-ID: times accepted} to `--report` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
from collections import Counter

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.M | re.I)


class Session(asyncio.Protocol):
    def __init__(self, delay: float, counts: Counter[str]) -> None:
        self.delay = delay
        self.counts = counts
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  (uvloop's transports are not asyncio.Transport)
        transport.write(b"220 sink.bench ESMTP\r\n")

    def reply(self, text: bytes) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, self._write, text)

    def _write(self, text: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(text)
            if text.startswith(b"221"):
                self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                message, self.buffer = self.buffer[:end], self.buffer[end + 5:]
                self.in_data = False
                found = MESSAGE_ID.search(message)
                self.counts[found.group(1).decode() if found else "(none)"] += 1
                self.reply(b"250 2.0.0 queued\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.reply(b"250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n250 SMTPUTF8\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.reply(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.reply(b"221 bye\r\n")
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self.reply(b"250 ok\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, delay: float, report: str) -> None:
    counts: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Session(delay, counts), "127.0.0.1", port, backlog=512)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    with open(report, "w", encoding="utf-8") as out:
        json.dump(counts, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--report", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.delay, args.report))


if __name__ == "__main__":
    main()

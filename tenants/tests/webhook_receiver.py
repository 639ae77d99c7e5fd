"""A real HTTP receiver on 127.0.0.1 (http.server in a thread) for webhook tests: it records every request
and answers as a test scripts it (a status per request, optionally after a delay)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    # Answers for the next requests, in order: (status, delay seconds); then `default`.
    script: list[tuple[int, float]] = field(default_factory=list)
    default: tuple[int, float] = (200, 0.0)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def wait_for(self, count: int, timeout: float = 60) -> list[Received]:
        deadline = time.time() + timeout
        while len(self.requests) < count:
            if time.time() > deadline:
                raise AssertionError(f"the receiver got {len(self.requests)} requests, not {count}")
            time.sleep(0.05)
        return list(self.requests)


def start_receiver() -> Receiver:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            receiver = holder["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                                  time.time()))
                status, delay = receiver.script.pop(0) if receiver.script else receiver.default
            if delay:
                time.sleep(delay)
            answer = b"ok" if status < 300 else b"receiver says no"
            try:
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:  # the sender gave up (timeout, killed worker)
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    holder["r"] = receiver
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


@pytest.fixture
def receiver():
    r = start_receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()

"""A loopback HTTP server that records every request (heartbeat monitor, Pushgateway)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


class Receiver:
    """Answers ``status`` with ``body`` after ``delay`` seconds (500 for the first
    ``fail_first`` requests); ``requests`` lists what arrived."""

    def __init__(
        self,
        status: int = 200,
        delay: float = 0.0,
        body: bytes = b"ok",
        fail_first: int = 0,
        fail_requests: frozenset[int] = frozenset(),
    ) -> None:
        self.status = status
        self.delay = delay
        self.body = body
        self.fail_first = fail_first
        self.fail_requests = fail_requests  # 1-based numbers of requests to answer 500
        self.requests: list[Request] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append(Request(self.command, self.path, body, headers))
                time.sleep(receiver.delay)
                number = len(receiver.requests)
                failing = number <= receiver.fail_first or number in receiver.fail_requests
                self.send_response(500 if failing else receiver.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

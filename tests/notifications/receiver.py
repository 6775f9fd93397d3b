"""A webhook receiver on 127.0.0.1 for tests: an http.server in a thread that records what
it is sent, answers as told, checks signatures, and confirms subscriptions like a real one."""

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


@dataclass
class Received:
    path: str
    headers: dict
    raw: bytes

    @property
    def body(self) -> dict:
        return json.loads(self.raw)

    def signature_valid(self, server_secret: str) -> bool:
        timestamp = self.headers["X-Webhook-Timestamp"]
        expected = hmac.new(
            server_secret.encode(), f"{timestamp}.".encode() + self.raw, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(self.headers["X-Webhook-Signature"], f"v1={expected}")


@dataclass
class Receiver:
    """`answer(received) -> (status, headers)`; by default 200. With `confirm`, a
    subscription_confirmation is confirmed by fetching its URL, as a subscriber would."""

    answer: Callable[[Received], tuple[int, dict]] | None = None
    confirm: bool = False
    received: list[Received] = field(default_factory=list)
    confirmations: list[int] = field(default_factory=list)

    def __post_init__(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                got = Received(self.path, dict(self.headers.items()), self.rfile.read(length))
                receiver.received.append(got)
                status, headers = receiver.answer(got) if receiver.answer else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                if receiver.confirm and got.body.get("type") == "subscription_confirmation":
                    response = requests.get(got.body["confirmation_url"], timeout=10)
                    receiver.confirmations.append(response.status_code)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def events(self) -> list[Received]:
        return [got for got in self.received if got.body.get("type") == "event"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

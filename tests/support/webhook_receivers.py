"""Webhook receivers on 127.0.0.1 for tests: an http.server in a thread that records what
it is sent, answers as told, checks signatures, and confirms subscriptions like a real one;
and a stalling one (a trickle or a black hole) that never completes an answer."""

import contextlib
import hashlib
import hmac
import json
import re
import select
import socket
import threading
import time
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


@dataclass
class Connection:
    opened: float
    closed: float | None = None
    # The request's path (a subscription's URL differs by its query) and its X-Webhook-Id.
    path: str = ""
    event_id: str = ""


class StallingReceiver:
    """A receiver on 127.0.0.1 that never completes an answer. `trickle`: sends a status line,
    then one header byte every `interval` seconds, so no single read ever waits long; otherwise a
    black hole: it reads the request and says nothing. Each connection is recorded with the
    times (monotonic) it was opened and closed by the sender, and the X-Webhook-Id it carried."""

    def __init__(self, *, trickle: bool, interval: float = 0.3, give_up_after: float = 60):
        self.trickle = trickle
        self.interval = interval
        self.give_up_after = give_up_after
        self.connections: list[Connection] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.stopping = threading.Event()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self.stall, args=(sock,), daemon=True).start()

    def stall(self, sock: socket.socket) -> None:
        connection = Connection(opened=time.monotonic())
        self.connections.append(connection)
        with sock:
            head = b""
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head:
                    piece = sock.recv(4096)
                    if not piece:
                        break
                    head += piece
            request_line = head.split(b"\r\n", 1)[0].split(b" ")
            connection.path = request_line[1].decode() if len(request_line) > 1 else ""
            found = re.search(rb"(?im)^x-webhook-id:\s*(\S+)", head)
            connection.event_id = found.group(1).decode() if found else ""
            pending = b"HTTP/1.1 200 OK\r\nX-Pad: " if self.trickle else b""
            ends_at = time.monotonic() + self.give_up_after
            while not self.stopping.is_set() and time.monotonic() < ends_at:
                try:
                    if self.trickle:
                        sock.sendall(pending[:1])
                        pending = pending[1:] or b"a"
                    readable, _, _ = select.select([sock], [], [], self.interval)
                    if readable and not sock.recv(4096):
                        break  # the sender closed it
                except OSError:
                    break  # the sender shut it down
            connection.closed = time.monotonic()

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()

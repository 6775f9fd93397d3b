"""Where the service may send a webhook, and the one HTTP client that sends it.

A callback URL is http(s) and its host must resolve only to public addresses (unless
`WEBHOOK_ALLOW_PRIVATE_HOSTS`); that is checked when a subscription is made and again on every
connection, against the very address the socket connects to, so a name that later resolves
to 127.0.0.1 or 169.254.169.254 (DNS rebinding) still reaches nothing inside. No redirect is
followed, no proxy from the environment is used, and at most a few KiB of the answer are read.

A try has one deadline for all of it (connecting, sending, the answer's head and the start of its
body): a watchdog shuts the try's sockets down when it passes, so a receiver that trickles a byte
every few seconds, which never trips a per-read timeout, still ends the try on time.
"""

import contextlib
import contextvars
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util import connection as urllib3_connection

from batchsite.errors import ApplicationError

RESPONSE_READ_BYTES = 4096
EXCERPT_CHARS = 500


class CallbackNotAllowed(ApplicationError):
    def __init__(self, description: str):
        super().__init__(description, subcode="callback_url_not_allowed", status_code=400)


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:
            return False
        # An IPv4 address carried inside an IPv6 one (mapped, or 6to4's 2002::/16) is where the
        # packets end up: it must be public itself.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            ip = embedded
    return ip.is_global and not (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
    )


def allowed_addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to; refused when any of them is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise CallbackNotAllowed(f"The callback host {host} does not resolve ({error}).") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not settings.WEBHOOK_ALLOW_PRIVATE_HOSTS:
        refused = [address for address in addresses if not address_is_public(address)]
        if refused:
            raise CallbackNotAllowed(
                f"The callback host {host} resolves to {refused[0]}, a loopback, private, link-local, "
                "multicast or reserved address."
            )
    return addresses


def callback_url_check(url: str) -> str:
    """The URL if the service may POST to it; CallbackNotAllowed (400) otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise CallbackNotAllowed("The callback URL is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackNotAllowed("The callback URL must be http or https.")
    if not parts.hostname:
        raise CallbackNotAllowed("The callback URL has no host.")
    if parts.username or parts.password:
        raise CallbackNotAllowed("The callback URL may not carry a user name or password.")
    allowed_addresses(parts.hostname, port)
    return url


class Deadline:
    """The end of one try. Every socket the try opens is watched; when the time is up the
    watchdog shuts them down, which ends whatever read or write is blocked on them."""

    def __init__(self, seconds: float):
        self.ends_at = time.monotonic() + seconds
        self.passed = False
        self.watched: list[socket.socket] = []
        self.lock = threading.Lock()
        self.timer = threading.Timer(seconds, self.expire)
        self.timer.daemon = True

    def left(self) -> float:
        return max(self.ends_at - time.monotonic(), 0.0)

    def watch(self, sock: socket.socket) -> None:
        # A duplicate of the descriptor: TLS wraps (and detaches) the socket urllib3 holds, and
        # shutting the connection down through any descriptor of it ends the wrapped one's reads.
        with self.lock:
            self.watched.append(sock.dup())
            if self.passed:
                self.shut(self.watched[-1])

    def expire(self) -> None:
        with self.lock:
            self.passed = True
            for sock in self.watched:
                self.shut(sock)

    @staticmethod
    def shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed by the peer or by the try
            sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> "Deadline":
        current_deadline.set(self)
        self.timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.timer.cancel()
        current_deadline.set(None)
        with self.lock:
            for sock in self.watched:
                sock.close()
            self.watched.clear()


# The deadline of the try running in this thread, for the connections it opens.
current_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "webhook_deadline", default=None
)


class CheckedConnectionMixin:
    """Resolves the host itself, refuses what `allowed_addresses` refuses and connects to the
    address it checked, within the try's deadline; TLS still verifies the certificate against
    the host name."""

    def _new_conn(self):
        try:
            addresses = allowed_addresses(self._dns_host, self.port)
        except CallbackNotAllowed as refused:
            raise NewConnectionError(self, refused.description) from None
        deadline = current_deadline.get()
        last_error = None
        for address in addresses:
            timeout = deadline.left() if deadline else self.timeout
            if deadline and timeout <= 0:
                break
            try:
                sock = urllib3_connection.create_connection(
                    (address, self.port),
                    timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as error:
                last_error = error
                continue
            if deadline:
                deadline.watch(sock)
            return sock
        raise NewConnectionError(
            self, f"Failed to establish a new connection: {last_error or 'deadline passed'}"
        )


class CheckedHTTPConnection(CheckedConnectionMixin, HTTPConnection):
    pass


class CheckedHTTPSConnection(CheckedConnectionMixin, HTTPSConnection):
    pass


class CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = CheckedHTTPConnection


class CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = CheckedHTTPSConnection


class CheckedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": CheckedHTTPConnectionPool,
            "https": CheckedHTTPSConnectionPool,
        }
        self.poolmanager.key_fn_by_scheme = dict(self.poolmanager.key_fn_by_scheme)


def checked_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc from the environment
    adapter = CheckedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass(frozen=True)
class PostOutcome:
    status_code: int | None
    latency_ms: int
    error: str = ""
    excerpt: str = ""

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error


def post(url: str, *, body: bytes, headers: dict) -> PostOutcome:
    """One POST: no redirect followed, `WEBHOOK_TIMEOUT_SECONDS` in all from connecting to the
    end of the answer read, at most RESPONSE_READ_BYTES of its body read. Never raises: any
    error is the try's failure."""
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    started = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    with Deadline(timeout) as deadline:
        try:
            callback_url_check(url)
            with checked_session() as session:
                response = session.post(
                    url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
                )
                try:
                    excerpt = read_some(response, deadline=deadline.ends_at)
                finally:
                    response.close()
        except CallbackNotAllowed as refused:
            return PostOutcome(None, elapsed_ms(), error=f"callback_url_not_allowed: {refused.description}")
        except Exception as error:  # noqa: BLE001 - whatever the receiver does is that try's failure
            if deadline.passed:
                return PostOutcome(None, elapsed_ms(), error=f"no complete answer within {timeout:g} s")
            return PostOutcome(None, elapsed_ms(), error=f"{type(error).__name__}: {error}"[:1000])
    latency = elapsed_ms()
    if deadline.passed or latency > timeout * 1000:
        return PostOutcome(response.status_code, latency, error=f"no complete answer within {timeout:g} s")
    return PostOutcome(response.status_code, latency, excerpt=excerpt)


def read_some(response, *, deadline: float) -> str:
    """The start of the body: a few KiB at most, and nothing after the deadline."""
    received = b""
    try:
        while len(received) < RESPONSE_READ_BYTES and time.monotonic() < deadline:
            piece = response.raw.read(512, decode_content=False)
            if not piece:
                break
            received += piece
    except Exception:  # noqa: BLE001 - the status already arrived; a broken body does not matter
        pass
    return received[:EXCERPT_CHARS].decode("utf-8", errors="replace")

"""Gunicorn pieces named by batchsite/gunicorn_conf.py: a thread worker that drops slow or
stalled clients, and an access log without tokens.

Gunicorn's gthread worker waits (in the poller) for a connection's first byte, but then hands
the connection to a thread that blocks reading the rest of the request for as long as the
client likes: eight clients each sending an unfinished header took every thread of `make run`
(slowloris), and twelve sending a body a byte every 4 s did the same. Here each request has
deadlines counted from its start, when the connection (or, kept alive, its next request)
reached the worker: its head must arrive within HEADER_TIMEOUT seconds, its body within
HEADER_TIMEOUT + Content-Length / BODY_MIN_BYTES_PER_SECOND (a chunked body, whose size is
unknown, within HEADER_TIMEOUT), and no read of the body waits more than BODY_IDLE_TIMEOUT
seconds. Deadlines are totals: a client trickling a byte at a time cannot stretch them. The
wait for a free thread counts, so slow clients queued behind slow clients fail fast; but what
arrived whole while it waited is served however late its thread comes. Production still
belongs behind a buffering proxy (deploy/nginx.conf); this keeps the server itself standing.
"""

import os
import time

from gunicorn.glogging import Logger
from gunicorn.http.body import LengthReader
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

from batchsite.redact import TokenRedactingFilter, redact


def project_settings():
    """The project's settings as they resolve for every process (the environment, then `.env`):
    gunicorn's master reads them before any worker loads the app."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "batchsite.settings")
    from django.conf import settings

    return settings


HEADER_TIMEOUT = project_settings().WEB_HEADER_TIMEOUT
BODY_IDLE_TIMEOUT = project_settings().WEB_BODY_IDLE_TIMEOUT
BODY_MIN_BYTES_PER_SECOND = project_settings().WEB_BODY_MIN_BYTES_PER_SECOND


class DeadlineSocket:
    """The client socket as the request parser sees it: recv() with the request's deadlines,
    the head's then the body's, both counted from the request's start."""

    def __init__(self, sock, since: float):
        self._sock = sock
        self.start_head(since)

    def start_head(self, since: float):
        self._since = since
        self._head_deadline = since + HEADER_TIMEOUT
        self._body_deadline = None

    def start_body(self, content_length: int | None):
        self._head_deadline = None
        self._body_deadline = self._since + HEADER_TIMEOUT + (content_length or 0) / BODY_MIN_BYTES_PER_SECOND
        # Also the answer's: writes inherit the timeout, and the head's may be nearly spent.
        self._sock.settimeout(BODY_IDLE_TIMEOUT)

    def recv(self, size):
        if self._head_deadline is not None:
            try:
                return self._recv_by(self._head_deadline, size)
            except (TimeoutError, BlockingIOError):
                # Closed quietly like a client that went away: it was too slow to be served.
                raise NoMoreData(b"") from None
        if self._body_deadline is None:
            return self._sock.recv(size)
        try:
            return self._recv_by(self._body_deadline, size)
        except BlockingIOError:
            # An OSError, as a read timeout is: Django answers 400 body_not_received, gunicorn
            # stops draining and closes the connection.
            raise TimeoutError("the request body did not arrive by its deadline") from None

    def _recv_by(self, deadline: float, size: int) -> bytes:
        """One read that waits no later than `deadline` (nor longer than the socket's own
        timeout, the body's idle one or gunicorn's drain). Past the deadline, only what the
        client already sent is read (timeout 0 is a non-blocking read): a whole request that
        waited in the queue for a thread is served, an unfinished one is dropped at once."""
        timeout = self._sock.gettimeout()
        left = max(deadline - time.monotonic(), 0.0)
        self._sock.settimeout(left if timeout is None else min(left, timeout))
        try:
            return self._sock.recv(size)
        finally:
            self._sock.settimeout(timeout)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def deadline_socket_of(conn) -> DeadlineSocket | None:
    unreader = getattr(getattr(conn, "parser", None), "unreader", None)
    sock = getattr(unreader, "sock", None)
    return sock if isinstance(sock, DeadlineSocket) else None


class DeadlineThreadWorker(ThreadWorker):
    def enqueue_req(self, conn):
        # The head's deadline counts from here, not from when a thread is free: connections
        # queued behind slow ones then fail fast instead of each taking a thread in turn.
        conn.queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn):
        if not getattr(conn, "deadline_armed", False):
            conn.deadline_armed = True
            init = conn.init

            def init_with_deadline():
                # gunicorn calls init() for every request of a connection; a second wrapper
                # would keep the deadlines of an older request, which nothing resets: a body
                # read then ran against a spent head deadline (400 body_not_received) and a
                # head against one (closed unanswered).
                init()
                unreader = getattr(conn.parser, "unreader", None)
                sock = getattr(unreader, "sock", None)
                if sock is not None and not isinstance(sock, DeadlineSocket):
                    unreader.sock = DeadlineSocket(sock, conn.queued_at)

            conn.init = init_with_deadline
        else:
            sock = deadline_socket_of(conn)
            if sock is not None:
                sock.start_head(conn.queued_at)  # the next request on a kept-alive connection
        return super().handle(conn)

    def handle_request(self, req, conn):
        sock = deadline_socket_of(conn)
        if sock is not None:
            length = req.body.reader.length if isinstance(req.body.reader, LengthReader) else None
            sock.start_body(length)
        return super().handle_request(req, conn)


class RedactingLogger(Logger):
    """The access log, with every credential in a path or a query redacted (batchsite.redact);
    with LOG_FORMAT=json, gunicorn's own lines (start-up, workers, access) are JSON objects like
    the app's."""

    def setup(self, cfg):
        super().setup(cfg)
        # gunicorn's own lines name requests too ("Error handling request <uri>").
        for handler in self.error_log.handlers:
            handler.addFilter(TokenRedactingFilter())
        if project_settings().LOG_FORMAT == "json":
            # The app's formatter (LOG_FORMAT), imported here: the ground names no app at import.
            from batchsite.logs import JsonFormatter

            for handler in (*self.error_log.handlers, *self.access_log.handlers):
                handler.setFormatter(JsonFormatter())

    def atoms(self, resp, req, environ, request_time):
        return {key: redact(value) for key, value in super().atoms(resp, req, environ, request_time).items()}

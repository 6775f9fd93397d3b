"""Gunicorn started as `make run` starts it (batchsite/gunicorn_conf.py, two workers) keeps
answering while slow clients hold connections open, and its logs carry no tokens."""

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")


def make_run_command(port: int, **environment) -> list[str]:
    """The gunicorn arguments of `make run`, as make expands them (`make -n` prints, runs nothing)."""
    env = {key: value for key, value in os.environ.items() if key != "HOST"}
    printed = subprocess.run(
        ["make", "-n", "-s", "run", f"PORT={port}"],
        cwd=ROOT,
        env={**env, **environment},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.replace("\\\n", " ")
    line = re.search(r'/gunicorn ([^"]*)"', printed).group(1)
    return line.split()


@contextlib.contextmanager
def gunicorn_running(folder: Path, *extra_arguments: str, **environment: str):
    """`make run`'s gunicorn (with `extra_arguments` after its own, which win) on the embedded
    defaults in `folder`: this is about gunicorn, not the backends. Yields (url, port, log)."""
    port = free_port()
    arguments = [*make_run_command(port), *extra_arguments]
    services = ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "AWS_STORAGE_BUCKET_NAME")
    env = {key: value for key, value in os.environ.items() if key not in services}
    env["DATA_DIR"] = str(folder / "data")
    env.update(environment)
    log = folder / "gunicorn.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(GUNICORN), *arguments], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url, port, log
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A shorter body stall than the default 10 s, so the stalled-body test is quick.
    with gunicorn_running(tmp_path_factory.mktemp("gunicorn"), WEB_BODY_IDLE_TIMEOUT="2") as running:
        yield running


BUSY_HEADER_TIMEOUT = 2
BUSY_THREADS = 2
BUSY_BODY_MIN_BYTES_PER_SECOND = 100


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory):
    """One worker of two threads and a 2 s head deadline: two clients hold every thread. A body
    must arrive within 2 s + 10 ms a byte of its request's start: the 1000 bytes of
    `every_thread_held` have 12 s, the 60 of `trickled_form` 2.6 s."""
    with gunicorn_running(
        tmp_path_factory.mktemp("gunicorn-busy"),
        "--workers",
        "1",
        WEB_THREADS=str(BUSY_THREADS),
        WEB_HEADER_TIMEOUT=str(BUSY_HEADER_TIMEOUT),
        WEB_BODY_IDLE_TIMEOUT="2",
        WEB_BODY_MIN_BYTES_PER_SECOND=str(BUSY_BODY_MIN_BYTES_PER_SECOND),
    ) as running:
        yield running


def test_make_run_binds_loopback_unless_host_says_otherwise():
    command = make_run_command(8123)
    assert command[command.index("-c") + 1] == "batchsite/gunicorn_conf.py"
    assert command[command.index("--bind") + 1] == "127.0.0.1:8123"
    command = make_run_command(8123, HOST="0.0.0.0")
    assert command[command.index("--bind") + 1] == "0.0.0.0:8123"


def slow_client(port: int, stop: threading.Event) -> None:
    """Sends a request head one header at a time and never finishes it."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while not stop.wait(0.5):
                sock.sendall(b"X-Slow: 1\r\n")
    except OSError:
        pass  # dropped by the server: what it should do


def attack_and_time_healthz(url: str, port: int) -> tuple[int, float]:
    stop = threading.Event()
    clients = [threading.Thread(target=slow_client, args=(port, stop), daemon=True) for _ in range(24)]
    for client in clients:
        client.start()
    try:
        time.sleep(1)  # every slow client holds a connection with an unfinished head
        started = time.monotonic()
        try:
            status = requests.get(f"{url}/healthz", timeout=15).status_code
        except requests.Timeout:
            status = 0
        return status, time.monotonic() - started
    finally:
        stop.set()
        for client in clients:
            client.join()


def test_slowloris_does_not_stop_healthz(server):
    """Two rounds: the first one can find a worker's thread pool still growing."""
    url, port, _ = server
    for _ in range(2):
        status, elapsed = attack_and_time_healthz(url, port)
        assert status == 200, f"/healthz did not answer behind 24 slow clients ({elapsed:.1f} s)"
        assert elapsed < 7, f"/healthz took {elapsed:.1f} s behind 24 slow clients"


def test_a_stalled_body_is_dropped(server):
    """A POST whose body never ends gets its answer (here CSRF's 403: the form never arrived)
    once the body has stalled WEB_BODY_IDLE_TIMEOUT seconds, and its thread is free again."""
    _, port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(
            b"POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            # With a CSRF cookie, Django reads the form for the token: that read stalls.
            b"Cookie: csrftoken=abcdefghijklmnopqrstuvwxyzABCDEF\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nusername=x"
        )
        started = time.monotonic()
        answer = sock.recv(200)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 403"), answer
    assert 1.5 < elapsed < 6, elapsed


def test_tokens_are_redacted_from_the_logs(server):
    url, _, log = server
    token = "eyJoYW5kbGVyIjoiMTIzIn0:1tSecretSignature"
    requests.get(f"{url}/downloads/{token}", timeout=10)
    requests.put(f"{url}/uploads/{token}", data=b"x", timeout=10)
    requests.get(f"{url}/healthz?token={token}", timeout=10)
    time.sleep(0.5)
    text = log.read_text()
    assert "/downloads/[redacted]" in text and "/uploads/[redacted]" in text
    assert "token=[redacted]" in text
    assert token not in text


def trickling_body(port: int, release: threading.Event, answers: list) -> None:
    """Holds a thread: a form body sent a byte every 0.5 s (inside the body idle timeout) until
    `release`, then the rest at once; records the answer."""
    body = b"username=" + b"x" * 991
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Cookie: csrftoken=abcdefghijklmnopqrstuvwxyzABCDEF\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        sent = 0
        while not release.wait(0.5):
            sock.sendall(body[sent : sent + 1])
            sent += 1
        sock.sendall(body[sent:])
        answers.append(sock.recv(200))


@contextlib.contextmanager
def every_thread_held(port: int):
    """Every thread of `busy_server` reads a trickling body until the block ends; then they
    are answered (CSRF's 403: the form has no token)."""
    release = threading.Event()
    answers: list = []
    holders = [
        threading.Thread(target=trickling_body, args=(port, release, answers), daemon=True)
        for _ in range(BUSY_THREADS)
    ]
    for holder in holders:
        holder.start()
    time.sleep(0.5)
    try:
        yield
    finally:
        release.set()
        for holder in holders:
            holder.join(timeout=30)
    assert len(answers) == BUSY_THREADS and all(answer.startswith(b"HTTP/1.1 403") for answer in answers)


def queued_past_its_deadline(port: int, head: bytes) -> socket.socket:
    """A connection that sent `head` while every thread was held, longer than the head
    deadline; its threads are free again when this returns."""
    with every_thread_held(port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(head)
        time.sleep(BUSY_HEADER_TIMEOUT + 1)
        sock.setblocking(False)
        try:
            early = sock.recv(200)
        except BlockingIOError:
            early = None
        sock.settimeout(30)
    assert early is None, f"a thread was free: the request did not wait ({early!r})"
    return sock


def test_a_whole_request_queued_past_the_head_deadline_is_still_served(busy_server):
    """A complete request that waited for a thread longer than WEB_HEADER_TIMEOUT is answered
    (the API benchmark's 32 clients lost about one call each to this), not closed unanswered."""
    _, port, _ = busy_server
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with queued_past_its_deadline(port, head) as sock:
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 200"), answer


def test_an_unfinished_head_queued_past_the_head_deadline_is_dropped_at_once(busy_server):
    _, port, _ = busy_server
    with queued_past_its_deadline(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n") as sock:
        released = time.monotonic()
        answer = sock.recv(200)
        elapsed = time.monotonic() - released
    assert answer == b"", answer
    assert elapsed < 1, f"the unfinished head held a thread {elapsed:.1f} s past its deadline"


TRICKLED_BODY = b"username=" + b"x" * 51


def body_deadline(body: bytes) -> float:
    return BUSY_HEADER_TIMEOUT + len(body) / BUSY_BODY_MIN_BYTES_PER_SECOND


def trickled_form(port: int, answers: list) -> None:
    """A form POST with a CSRF cookie (so Django reads the form) whose body comes a byte every
    0.5 s, inside the body idle timeout, until the server answers; records (answer, seconds
    from connecting). Sending all of it would take 30 s."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Cookie: csrftoken=abcdefghijklmnopqrstuvwxyzABCDEF\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(TRICKLED_BODY)}\r\n\r\n".encode()
        )
        sock.settimeout(0.5)
        answer = b""
        for sent in range(len(TRICKLED_BODY)):
            if time.monotonic() - started > 15:
                break
            try:
                sock.sendall(TRICKLED_BODY[sent : sent + 1])
                answer = sock.recv(200)
                break
            except TimeoutError:
                pass  # no answer yet: the next byte
            except OSError:
                break  # reset by the server: no answer
        answers.append((answer, time.monotonic() - started))


def test_trickled_bodies_are_cut_at_their_deadline_and_healthz_still_answers(busy_server):
    """Three times as many bodies trickled a byte at a time as there are threads (the issue: a
    byte every 4 s under a 10 s idle timeout held every thread for good): each is answered at its
    total deadline (CSRF's 403: the form never arrived), those queued behind them at once, and
    /healthz is answered soon after the first are cut."""
    url, port, _ = busy_server
    answers: list = []
    tricklers = [
        threading.Thread(target=trickled_form, args=(port, answers), daemon=True)
        for _ in range(3 * BUSY_THREADS)
    ]
    for trickler in tricklers:
        trickler.start()
    time.sleep(0.5)
    started = time.monotonic()
    try:
        healthz = requests.get(f"{url}/healthz", timeout=15).status_code
    except requests.Timeout:
        healthz = 0
    healthz_seconds = time.monotonic() - started
    for trickler in tricklers:
        trickler.join(timeout=30)
    deadline = body_deadline(TRICKLED_BODY)
    assert healthz == 200 and healthz_seconds < deadline + 6, (healthz, healthz_seconds)
    assert len(answers) == len(tricklers)
    for answer, seconds in answers:
        assert answer.startswith(b"HTTP/1.1 403"), (answer, seconds)
        assert deadline - 0.5 < seconds < deadline + 6, (
            f"cut after {seconds:.1f} s, deadline {deadline:.1f} s"
        )


@contextlib.contextmanager
def cpus_busy():
    """One process spinning per CPU: queue waits then reach the deadlines, as on a loaded host."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def sign_out_repeatedly(url: str, times: int, outcomes: list) -> None:
    """One kept-alive connection: the login page for a CSRF token, then `times` sign-out forms
    carrying it, spread over twice the head timeout, so the connection outlives it however fast
    the host is. Each answers 302 only if its whole body was read (a body cut short is CSRF's
    403, an API's 400 body_not_received); records each status or error."""
    with requests.Session() as session:
        page = session.get(f"{url}/ui/login", timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        for _ in range(times):
            time.sleep(2 * BUSY_HEADER_TIMEOUT / times)
            try:
                response = session.post(
                    f"{url}/ui/logout", data={"csrfmiddlewaretoken": token}, timeout=30, allow_redirects=False
                )
                outcomes.append(response.status_code)
            except requests.RequestException as error:
                outcomes.append(repr(error))


def test_kept_alive_requests_under_load_are_all_served_whole(busy_server):
    """12 kept-alive clients x 40 small form POSTs on two threads of a loaded host (4 of 1,230
    answered 400 body_not_received once). The client sends the head and the body in two writes, so
    a thread can read a head whose body is still on its way: every deadline of a request counts
    from that request's start, never from its connection's, or the requests of a connection older
    than the head timeout are read past their deadline and lose bodies still in flight."""
    url, _, _ = busy_server
    outcomes: list = []
    clients = [threading.Thread(target=sign_out_repeatedly, args=(url, 40, outcomes)) for _ in range(12)]
    started = time.monotonic()
    with cpus_busy():
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=120)
    elapsed = time.monotonic() - started
    assert elapsed > BUSY_HEADER_TIMEOUT, "connections must outlive the head timeout"
    failures = [outcome for outcome in outcomes if outcome != 302]
    assert len(outcomes) == 12 * 40 and not failures, (len(outcomes), failures[:5])


SIGN_OUT_BODY = b"csrfmiddlewaretoken=abcdefghijklmnopqrstuvwxyzABCDEF"
SIGN_OUT_HEAD = (
    b"POST /ui/logout HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Cookie: csrftoken=abcdefghijklmnopqrstuvwxyzABCDEF\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n"
    + f"Content-Length: {len(SIGN_OUT_BODY)}\r\n\r\n".encode()
)


def answer_status(sock: socket.socket) -> bytes:
    """The status line of the next answer, its headers and body read up to its end."""
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096) or b"\r\n\r\n"
    length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE).group(1))
    body = head.split(b"\r\n\r\n", 1)[1]
    while len(body) < length:
        body += sock.recv(4096)
    return head.split(b"\r\n", 1)[0]


def test_a_body_sent_after_its_head_on_an_old_kept_alive_connection_is_read(busy_server):
    """The third request of a connection older than the head timeout, its body sent 0.5 s after
    its head (well inside its deadlines), is served whole: its deadlines count from its own
    start. Each request used to wrap the socket once more, the inner wrappers keeping an older
    request's spent head deadline: the body was read without waiting and lost."""
    _, port, _ = busy_server
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        statuses = []
        for _ in range(2):
            sock.sendall(SIGN_OUT_HEAD + SIGN_OUT_BODY)
            statuses.append(answer_status(sock))
        time.sleep(BUSY_HEADER_TIMEOUT + 0.5)
        sock.sendall(SIGN_OUT_HEAD)
        time.sleep(0.5)
        sock.sendall(SIGN_OUT_BODY)
        statuses.append(answer_status(sock))
    assert statuses == [b"HTTP/1.1 302 Found"] * 3, statuses

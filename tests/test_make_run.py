"""Ctrl-C on `make run`, as a person at a terminal does it: the terminal's SIGINT while a batch
processes stops everything within seconds, says "Stopped." and exits 0; the next `make run`
finishes the batch with every line run exactly once. A worker that dies is started again while
the web server answers on.

`make run` runs under a pseudo-terminal, and Ctrl-C is the byte a keyboard sends (0x03), so the
terminal driver signals its foreground process group exactly as it would for a person. The
runs use the embedded default (SQLite, filesystem broker) in a fresh DATA_DIR whatever the
suite's own DATABASE_URL and broker are."""

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tests.support.ports import free_port

# `make run` always runs the embedded default, whatever the suite's own database and broker: its
# tests run once, in the embedded pass, not again in each services pass.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL.startswith("filesystem://"),
        reason="make run's embedded default is tested in the embedded pass",
    ),
]

ROOT = Path(settings.BASE_DIR)
LINES = 100_000
CTRL_C = b"\x03"


def embedded_env(data_dir: Path, port: int) -> dict:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DATABASE_URL", "CELERY_", "AWS_", "DJANGO_"))
    }
    env.update(
        DATA_DIR=str(data_dir),
        PORT=str(port),
        # Small chunks, so the batch is mid-way when Ctrl-C comes.
        BATCH_CHUNK_LINES="500",
    )
    return env


class MakeRun:
    """`make run` on a terminal of its own."""

    def __init__(self, env: dict, log: Path):
        self.log = log
        master, terminal = os.openpty()

        def on_the_terminal():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            preexec_fn=on_the_terminal,
        )
        os.close(terminal)
        self.master = master
        self.output = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        with self.log.open("ab") as log:
            while True:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.output += data
                log.write(data)

    def ctrl_c(self):
        os.write(self.master, CTRL_C)

    def finish(self, timeout: float) -> tuple[int, float]:
        """make's exit status and the seconds it took, then the rest of its output."""
        started = time.monotonic()
        returncode = self.process.wait(timeout=timeout)
        took = time.monotonic() - started
        self.reader.join(timeout=5)
        os.close(self.master)
        return returncode, took

    def kill(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait()


def wait_healthy(base: str, run: MakeRun, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.process.poll() is None, run.output.decode(errors="replace")[-3000:]
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError("make run did not answer /healthz")


def polite_session() -> requests.Session:
    """A client as a careful one behaves: a 429 (the account's request rate; the soak's clients
    send as fast as answers come) is waited out as its Retry-After says, then sent again."""
    session = requests.Session()
    retry = Retry(
        total=None,
        connect=0,
        read=0,
        status=100,
        status_forcelist=[429],
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


def submit_batch(base: str, secret: str, lines: int = LINES) -> str:
    headers = {"Authorization": secret}
    body = "".join(json.dumps({"description": {"n": n}}) + "\n" for n in range(lines)).encode()
    with polite_session() as session:
        cache = session.post(f"{base}/cache", headers=headers, timeout=10)
        assert cache.status_code == 201, cache.text
        assert session.put(cache.json()["url"], data=body, timeout=30).status_code == 200
        created = session.post(
            f"{base}/batches",
            headers=headers,
            json={"handler": cache.json()["handler"], "operation": "create_twin"},
            timeout=10,
        )
    assert created.status_code == 201, created.text
    return created.json()["batch"]


def batch_of(base: str, secret: str, batch: str) -> dict:
    with polite_session() as session:
        return session.get(f"{base}/batches/{batch}", headers={"Authorization": secret}, timeout=10).json()


def create_account(env: dict) -> str:
    """A new account's secret."""
    created = subprocess.run(
        [sys.executable, "manage.py", "create_account", "Acme", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=True,
        text=True,
    )
    return json.loads(created.stdout)["secret"]


def twin_count(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "db.sqlite3") as db:
        return db.execute("select count(*) from twins_twin").fetchone()[0]


def test_ctrl_c_stops_make_run_and_the_next_run_finishes_the_batch(tmp_path):
    data_dir, port = tmp_path / "data", free_port()
    env, base = embedded_env(data_dir, port), f"http://127.0.0.1:{port}"
    log = tmp_path / "make-run.log"

    first = MakeRun(env, log)
    try:
        wait_healthy(base, first)
        secret = create_account(env)
        batch = submit_batch(base, secret)
        deadline = time.monotonic() + 60
        while batch_of(base, secret, batch)["progress"]["processed"] == 0:
            assert time.monotonic() < deadline, "the batch never started processing"
            time.sleep(0.1)

        first.ctrl_c()
        returncode, stopped_after = first.finish(timeout=10)
    finally:
        first.kill()
    output = first.output.decode(errors="replace")
    assert returncode == 0, output[-3000:]
    assert stopped_after < 10
    assert "Stopped." in output
    assert "The web server exited" not in output and "Error" not in output.splitlines()[-1]
    interrupted_at = twin_count(data_dir)
    assert 0 < interrupted_at < LINES, "Ctrl-C came after the batch had finished"

    second = MakeRun(env, log)
    try:
        wait_healthy(base, second)
        deadline = time.monotonic() + 120
        while (state := batch_of(base, secret, batch))["status"] != "completed":
            assert time.monotonic() < deadline, state
            time.sleep(0.3)
        second.ctrl_c()
        assert second.finish(timeout=10)[0] == 0
    finally:
        second.kill()

    assert state["progress"] == {
        "total": LINES,
        "processed": LINES,
        "succeeded": LINES,
        "failed": 0,
        "rate_lps": None,
        "eta_ts": None,
    }
    assert twin_count(data_dir) == LINES
    print(f"stopped {stopped_after:.1f} s after Ctrl-C, {interrupted_at} of {LINES} lines done by then")


def processes() -> dict[int, tuple[int, list[str]]]:
    """Every process: its parent and its arguments."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            arguments = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, IndexError):
            continue
        found[int(entry.name)] = (parent, arguments)
    return found


def descendants(root: int) -> set[int]:
    table, found, pending = processes(), set(), [root]
    while pending:
        parent = pending.pop()
        children = {pid for pid, (ppid, _) in table.items() if ppid == parent}
        found |= children
        pending += children
    return found


def running_worker(run: MakeRun) -> int | None:
    """The Celery worker's main process, once it has started its pool and its beat."""
    table = processes()
    for pid in descendants(run.process.pid):
        parent, arguments = table.get(pid, (0, []))
        parent_arguments = table.get(parent, (0, []))[1]
        is_worker = any(argument.endswith("/celery") for argument in arguments) and "worker" in arguments
        if is_worker and parent_arguments[1:2] == ["batchsite/supervise.sh"]:
            return pid if len(descendants(pid)) >= 3 else None
    return None


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def started_worker(run) -> int:
    """The pid of make run's worker, once it is up."""
    deadline = time.monotonic() + 120
    while (worker := running_worker(run)) is None:
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.3)
    return worker


@contextmanager
def make_run_serving(tmp_path):
    """`make run` on a fresh DATA_DIR, answering, with an account: (run, base URL, secret). Killed
    on the way out, whatever happened."""
    data_dir, port = tmp_path / "data", free_port()
    env, base = embedded_env(data_dir, port), f"http://127.0.0.1:{port}"
    run = MakeRun(env, tmp_path / "make-run.log")
    try:
        wait_healthy(base, run)
        yield run, base, create_account(env)
    finally:
        run.kill()


def completed(base: str, secret: str, batch: str, *, deadline: float) -> dict:
    """The batch once completed; fails past `deadline` (monotonic)."""
    while (state := batch_of(base, secret, batch))["status"] != "completed":
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
    return state


def test_a_killed_worker_is_started_again_while_the_web_answers(tmp_path):
    with make_run_serving(tmp_path) as (run, base, secret):
        killed = started_worker(run)
        left_by_killed = descendants(killed)
        os.kill(killed, 9)
        killed_at = time.monotonic()

        answers = []
        deadline = time.monotonic() + 120
        while running_worker(run) in (None, killed):
            assert time.monotonic() < deadline, run.output.decode(errors="replace")[-3000:]
            answers.append(requests.get(f"{base}/healthz", timeout=10).status_code)
            time.sleep(0.2)
        restarted_after = time.monotonic() - killed_at
        assert answers and set(answers) == {200}, answers
        assert not any(pid_alive(pid) for pid in left_by_killed), "the killed worker's beat or pool was left"

        state = completed(
            base, secret, submit_batch(base, secret, lines=200), deadline=time.monotonic() + 120
        )
        run.ctrl_c()
        returncode, _ = run.finish(timeout=10)
    output = run.output.decode(errors="replace")
    assert "The worker exited (status 137); starting it again in 1 s." in output
    assert returncode == 0 and "Stopped." in output, output[-3000:]
    assert state["progress"]["succeeded"] == 200
    print(
        f"worker running again {restarted_after:.1f} s after SIGKILL; {len(answers)} health checks, all 200"
    )


def use_the_api(base: str, secret: str, until: float) -> int:
    """What a client does between batches: create and read twins, list batches, probe health."""
    headers, calls = {"Authorization": secret}, 0
    with polite_session() as session:
        while time.monotonic() < until:
            created = session.post(
                f"{base}/twins", headers=headers, json={"description": {"n": calls}}, timeout=30
            )
            assert created.status_code == 201, created.text
            twin = created.json()["creation_certificate"]["uuid"]
            assert session.get(f"{base}/twins/{twin}", headers=headers, timeout=30).status_code == 200
            assert session.get(f"{base}/batches", headers=headers, timeout=30).status_code == 200
            assert session.get(f"{base}/healthz", timeout=30).status_code == 200
            calls += 4
    return calls


def soak_make_run(tmp_path, seconds: float):
    """`make run` (the embedded default) under mixed API use and a batch every few seconds: the
    worker must never die (it used to within 10-45 minutes, on kombu's filesystem transport)."""
    with make_run_serving(tmp_path) as (run, base, secret):
        worker = started_worker(run)
        until, batches = time.monotonic() + seconds, []
        with ThreadPoolExecutor(max_workers=2) as clients:
            calls = [clients.submit(use_the_api, base, secret, until) for _ in range(2)]
            while time.monotonic() < until:
                batches.append(submit_batch(base, secret, lines=300))
                time.sleep(3)
            api_calls = sum(call.result() for call in calls)
        deadline = time.monotonic() + 300
        for batch in batches:
            state = completed(base, secret, batch, deadline=deadline)
            assert state["progress"]["succeeded"] == 300, state
        assert running_worker(run) == worker, "the worker was started again"
        run.ctrl_c()
        returncode, _ = run.finish(timeout=10)
    output = run.output.decode(errors="replace")
    assert "Unrecoverable error" not in output and "The worker exited" not in output, output[-5000:]
    assert returncode == 0 and "Stopped." in output, output[-3000:]
    print(f"{seconds:.0f} s: {len(batches)} batches of 300 lines, {api_calls} API calls, no worker death")


def test_make_run_under_use_keeps_its_worker(tmp_path):
    soak_make_run(tmp_path, seconds=10)


@pytest.mark.soak
def test_make_run_under_use_keeps_its_worker_for_an_hour(tmp_path):
    soak_make_run(tmp_path, seconds=float(os.environ.get("RUN_SOAK_SECONDS", 3600)))

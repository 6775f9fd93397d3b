"""Ctrl-C on `make run`, as a person at a terminal does it: the terminal's SIGINT while a batch
processes stops everything within seconds, says "Stopped." and exits 0; the next `make run`
finishes the batch with every line run exactly once.

`make run` runs under a pseudo-terminal, and Ctrl-C is the byte a keyboard sends (0x03), so the
terminal driver signals its foreground process group exactly as it would for a person. The
runs use the embedded default (SQLite, filesystem broker) in a fresh DATA_DIR whatever the
suite's own DATABASE_URL and broker are."""

import fcntl
import json
import os
import socket
import sqlite3
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

pytestmark = pytest.mark.slow

ROOT = Path(settings.BASE_DIR)
LINES = 100_000
CTRL_C = b"\x03"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def submit_batch(base: str, secret: str) -> str:
    headers = {"Authorization": secret}
    body = "".join(json.dumps({"description": {"n": n}}) + "\n" for n in range(LINES)).encode()
    cache = requests.post(f"{base}/cache", headers=headers, timeout=10).json()
    assert requests.put(cache["url"], data=body, timeout=30).status_code == 200
    created = requests.post(
        f"{base}/batches",
        headers=headers,
        json={"handler": cache["handler"], "operation": "create_twin"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return created.json()["batch"]


def batch_of(base: str, secret: str, batch: str) -> dict:
    return requests.get(f"{base}/batches/{batch}", headers={"Authorization": secret}, timeout=10).json()


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
        created = subprocess.run(
            [sys.executable, "manage.py", "create_account", "Acme", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=True,
            text=True,
        )
        secret = json.loads(created.stdout)["secret"]
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
    assert "exited; stopped the other" not in output and "Error" not in output.splitlines()[-1]
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

    assert state["progress"] == {"total": LINES, "processed": LINES, "succeeded": LINES, "failed": 0}
    assert twin_count(data_dir) == LINES
    print(f"stopped {stopped_after:.1f} s after Ctrl-C, {interrupted_at} of {LINES} lines done by then")

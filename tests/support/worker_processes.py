"""Real `celery worker` processes for tests, on the test database, storage and broker."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection


def database_url() -> str:
    """The URL of the database the tests use, for processes started by the tests."""
    current = connection.settings_dict
    if current["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{current['NAME']}"
    auth = current["USER"] + (f":{current['PASSWORD']}" if current["PASSWORD"] else "")
    return f"postgres://{auth}@{current['HOST'] or '127.0.0.1'}:{current['PORT'] or 5432}/{current['NAME']}"


class WorkerProcess:
    """A real `celery worker` (with its embedded beat) on the test database and storage."""

    def __init__(
        self,
        *,
        concurrency: int = 2,
        extra_env: dict | None = None,
        log_name: str = "worker",
        node_name: str = "",
        queues: str = "",
        command_prefix: tuple[str, ...] = (),
    ):
        self.env = {
            **os.environ,
            "DATA_DIR": str(settings.DATA_DIR),
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "MAINTENANCE_INTERVAL_SECONDS": "1",
            "PIPELINE_SWEEP_SECONDS": "0.5",
            "PIPELINE_KICK_AFTER_SECONDS": "2",
            "BATCH_LEASE_SECONDS": "3",
            "BATCH_CHUNK_LEASE_SECONDS": "5",
            "BATCH_STUCK_AFTER_SECONDS": "4",
            **(extra_env or {}),
        }
        self.concurrency = concurrency
        self.node_name = node_name
        self.queues = queues
        # What the command runs under, e.g. ("ip", "netns", "exec", name): the prefix must
        # exec the command, so the process (and its group) stays the worker's.
        self.command_prefix = command_prefix
        self.log_path = Path(settings.DATA_DIR) / f"{log_name}.log"
        self.process = None

    def start(self) -> "WorkerProcess":
        schedule = Path(settings.DATA_DIR) / f"beat-{time.monotonic_ns()}"
        command = [
            *self.command_prefix,
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "batchsite",
            "worker",
            "--beat",
            f"--schedule={schedule}",
            f"--concurrency={self.concurrency}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ]
        if self.node_name:
            command.append(f"--hostname={self.node_name}")
        if self.queues:
            command.append(f"--queues={self.queues}")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def kill(self) -> None:
        """SIGKILL to the worker and its pool children at once, as a crash would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """A warm shutdown: the main process lets its pool finish and stops it."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def discard(self) -> None:
        """SIGKILL to whatever is left of the worker's process group: a test's teardown, where
        what the worker was doing no longer matters. A warm shutdown took 2-3 s a worker, about
        5 minutes of each pass of the suite; the next test's fixture purges the queues."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


class WorkerGroup:
    """The worker processes a fault test started, stopped together however the test ends, with
    their logs joined for a failure's message."""

    def __init__(self):
        self.workers: list[WorkerProcess] = []

    def start(self, **options) -> WorkerProcess:
        worker = WorkerProcess(**options)
        self.workers.append(worker)
        return worker.start()

    def discard(self) -> None:
        for worker in self.workers:
            worker.discard()

    def log(self) -> str:
        return "\n".join(worker.log() for worker in self.workers)

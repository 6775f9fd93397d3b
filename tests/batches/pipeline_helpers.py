"""Running batches in tests: uploading through the services, and driving the pipeline either
in this process (deterministic, step by step) or with a real Celery worker process."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection

from batches import services
from batches.models import Batch, BatchStatus
from batches.pipeline import chunks, driver
from batches.statuses import TERMINAL

# The statuses a batch that runs to the end passes through, in order.
HAPPY_PATH = [
    BatchStatus.NEW,
    BatchStatus.COPYING,
    BatchStatus.COPIED,
    BatchStatus.VALIDATING,
    BatchStatus.PROCESSING,
    BatchStatus.PROCESSED,
    BatchStatus.WRITING_RESULTS,
    BatchStatus.COMPLETED,
]


def upload_bytes(caller, content: bytes, content_type: str = "application/x-ndjson"):
    upload = services.upload_create(account=caller.account, created_by=caller.account_user)
    return services.upload_store(
        handler=upload.handler,
        stream=io.BytesIO(content),
        content_length=len(content),
        content_type=content_type,
    )


def jsonl(records) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def batch_start(
    caller, operation: str, content: bytes, *, hash: str = "", content_type="application/x-ndjson"
):
    upload = upload_bytes(caller, content, content_type)
    batch, _ = services.batch_create(
        account=caller.account,
        user=caller.user,
        handler=str(upload.handler),
        operation=operation,
        hash=hash,
    )
    return batch


class InlinePipeline:
    """The pipeline's queue, run in this process in the order work was asked for."""

    def __init__(self):
        self.pending = deque()
        self.enqueue = driver.Enqueue(
            advance=lambda batch_id: self.pending.append((driver.batch_advance, (batch_id,))),
            run_chunks=lambda: self.pending.append((driver.chunks_work, ())),
        )

    def advance(self, batch) -> None:
        self.enqueue.advance(str(batch.pk))

    def step(self) -> bool:
        if not self.pending:
            return False
        function, args = self.pending.popleft()
        function(*args, self.enqueue)
        return True

    def drain(self) -> None:
        while self.step():
            pass

    def run_until(self, batch, status: str) -> None:
        while Batch.objects.get(pk=batch.pk).status != status:
            assert self.step(), f"the pipeline stopped before {status}"


def stop_after_first_chunk(batch, stop=None) -> Batch | None:
    """Runs the batch into processing and through its first chunk, stops it (a cancel by
    default; `services.batch_delete` deletes), then lets the pipeline finish."""
    runner = InlinePipeline()
    runner.advance(batch)
    runner.run_until(batch, BatchStatus.PROCESSING)
    assert chunks.chunk_claim_and_run(batch.pk)
    (stop or services.batch_cancel)(batch=batch)
    runner.advance(batch)
    runner.drain()
    return Batch.objects.filter(pk=batch.pk).first()


def run_batch(batch) -> Batch | None:
    """Runs the batch as far as it goes; None once it is deleted."""
    runner = InlinePipeline()
    runner.advance(batch)
    runner.drain()
    return Batch.objects.filter(pk=batch.pk).first()


def read_results(name: str) -> list[dict]:
    with default_storage.open(name, "rb") as results:
        return [json.loads(line) for line in results.read().decode().splitlines()]


def history(batch) -> list[str]:
    return list(Batch.objects.get(pk=batch.pk).history.values_list("to_status", flat=True))


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
        self.log_path = Path(settings.DATA_DIR) / f"{log_name}.log"
        self.process = None

    def start(self) -> "WorkerProcess":
        schedule = Path(settings.DATA_DIR) / f"beat-{time.monotonic_ns()}"
        command = [
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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_terminal(batch, *, timeout: float, worker: WorkerProcess | None = None) -> Batch:
    def terminal():
        current = Batch.objects.filter(pk=batch.pk).first()
        return current if current is not None and current.status in TERMINAL else None

    try:
        return wait_for(terminal, timeout=timeout, what=f"batch {batch.pk} to finish")
    except AssertionError as error:
        current = Batch.objects.filter(pk=batch.pk).first()
        detail = f"status={current.status if current else 'gone'}"
        raise AssertionError(f"{error} ({detail})\n{worker.log() if worker else ''}") from None

"""Waiting, within a deadline, for what other processes do."""

import time

from batches.models import Batch
from batches.statuses import TERMINAL
from tests.support.worker_processes import WorkerProcess


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

"""A cancel or DELETE of a running batch ends within a second or two, every time, on PostgreSQL
with two worker processes: chunk rows are locked before the batch row on every path and never
through a join, so the step that finishes a cancel cannot deadlock with a chunk worker.

STOP_ROUNDS sets how many batches each test stops (`make soak` runs more)."""

import os
import statistics
import time
from collections.abc import Callable

import pytest
from django.db import connection

from batches import services
from batches.models import Batch, BatchStatus
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import read_results
from tests.support.waiting import wait_for

S = BatchStatus
ROUNDS = int(os.environ.get("STOP_ROUNDS", "6"))
LINES = 20_000
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="two workers share chunks on PostgreSQL"),
]


def running_batch(caller, workers) -> tuple[Batch, float]:
    """A batch whose lines are running, and the seconds from its creation to its first chunk's
    commit: the same workers' task hops and file steps, timed in this run on this machine."""
    content = jsonl({"description": {"n": n}} for n in range(LINES))
    created = time.monotonic()
    batch = BatchFactory(caller=caller, content=content)
    wait_for(
        lambda: Batch.objects.get(pk=batch.pk).processed > 0,
        timeout=60,
        interval=0.02,
        what="processing to be under way",
    )
    return Batch.objects.get(pk=batch.pk), time.monotonic() - created


def logs_from_now(workers) -> Callable[[], str]:
    """A function that returns what the workers logged after this call."""
    sizes = {worker: worker.log_path.stat().st_size for worker in workers}

    def logged() -> str:
        return "".join(
            worker.log_path.read_bytes()[size:].decode(errors="replace") for worker, size in sizes.items()
        )

    return logged


def assert_ended_in_time(took: list[float], starts: list[float], logged: str) -> None:
    """Cancel is noticed within about a second (docs/contract.md, section 7): the product's promise, so it
    stays, with room for a loaded machine: twice the median time the same batches took to
    start on the same workers in this run (task hops, copying, validating, a chunk's commit),
    which grows with the load as a stop does. A deadlock (PostgreSQL detects it after 1 s, the
    chunk retries) is found in the workers' log, whatever the machine's speed."""
    assert "deadlock detected" not in logged
    assert max(took) < 1 + 2 * statistics.median(starts), f"stops {took}, starts {starts}"


def test_cancel_of_a_running_batch_ends_within_seconds_every_time(caller, two_workers):
    logged = logs_from_now(two_workers)
    took, starts = [], []
    for _ in range(ROUNDS):
        batch, started_in = running_batch(caller, two_workers)
        starts.append(started_in)
        asked = time.monotonic()
        services.batch_cancel(batch=batch)
        stopped = wait_for(
            lambda batch=batch: Batch.objects.filter(pk=batch.pk, status=S.CANCELLED).first(),
            timeout=30,
            interval=0.02,
            what="cancelled",
        )
        took.append(time.monotonic() - asked)
        results = read_results(stopped.results_file)
        assert [result["line"] for result in results] == list(range(1, LINES + 1))
        assert sum(result["status"] == 201 for result in results) == stopped.processed
    print(f"cancel to cancelled, seconds: {[round(seconds, 2) for seconds in took]}")
    assert_ended_in_time(took, starts, logged())


def test_delete_of_a_running_batch_ends_within_seconds_every_time(caller, two_workers):
    logged = logs_from_now(two_workers)
    took, starts = [], []
    for _ in range(ROUNDS):
        batch, started_in = running_batch(caller, two_workers)
        starts.append(started_in)
        asked = time.monotonic()
        services.batch_delete(batch=batch)
        wait_for(
            lambda batch=batch: not Batch.objects.filter(pk=batch.pk).exists(),
            timeout=30,
            interval=0.02,
            what="the batch to be deleted",
        )
        took.append(time.monotonic() - asked)
        assert caller.client.get(f"/batches/{batch.pk}").status_code == 404
    print(f"DELETE to gone, seconds: {[round(seconds, 2) for seconds in took]}")
    assert_ended_in_time(took, starts, logged())

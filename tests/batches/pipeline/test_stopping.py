"""A cancel or DELETE of a running batch ends within a second or two, every time, on PostgreSQL
with two worker processes: chunk rows are locked before the batch row on every path and never
through a join, so the step that finishes a cancel cannot deadlock with a chunk worker.

STOP_ROUNDS sets how many batches each test stops (`make soak` runs more)."""

import os
import time

import pytest
from django.db import connection

from batches import services
from batches.models import Batch, BatchStatus
from batchsite.celery import app as celery_app
from tests.batches.pipeline_helpers import WorkerProcess, batch_start, jsonl, read_results, wait_for

S = BatchStatus
ROUNDS = int(os.environ.get("STOP_ROUNDS", "6"))
LINES = 20_000
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="two workers share chunks on PostgreSQL"),
]


@pytest.fixture
def two_workers():
    celery_app.control.purge()
    workers = [WorkerProcess(log_name=f"stop-{n}", node_name=f"stop-{n}@%h").start() for n in range(2)]
    yield workers
    for worker in workers:
        worker.stop()


def running_batch(caller, workers) -> Batch:
    batch = batch_start(caller, "create_twin", jsonl({"description": {"n": n}} for n in range(LINES)))
    wait_for(
        lambda: Batch.objects.get(pk=batch.pk).processed > 0,
        timeout=60,
        interval=0.02,
        what="processing to be under way",
    )
    return Batch.objects.get(pk=batch.pk)


def test_cancel_of_a_running_batch_ends_within_seconds_every_time(caller, two_workers):
    took = []
    for _ in range(ROUNDS):
        batch = running_batch(caller, two_workers)
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
    assert max(took) < 3


def test_delete_of_a_running_batch_ends_within_seconds_every_time(caller, two_workers):
    took = []
    for _ in range(ROUNDS):
        batch = running_batch(caller, two_workers)
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
    assert max(took) < 3

"""Fair scheduling across accounts, on PostgreSQL with two worker processes: while one
account's large batch processes, another account's small batch completes within seconds,
because the next chunk any worker claims belongs to the account with the least work run.

FAIRNESS_LINES sets the large batch's size (`make soak` runs 300,000 lines)."""

import os
import time

import pytest
from django.db import connection

from batches.models import Batch, BatchStatus
from batchsite.celery import app as celery_app
from tests.batches.pipeline_helpers import WorkerProcess, batch_start, jsonl, wait_for, wait_terminal

S = BatchStatus
LARGE_LINES = int(os.environ.get("FAIRNESS_LINES", "100000"))
SMALL_LINES = 1000
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="two workers share chunks on PostgreSQL"),
]


@pytest.fixture
def two_workers():
    celery_app.control.purge()
    workers = [WorkerProcess(log_name=f"fair-{n}", node_name=f"fair-{n}@%h").start() for n in range(2)]
    yield workers
    for worker in workers:
        worker.stop()


def test_a_small_batch_is_not_starved_by_another_accounts_large_one(caller, stranger, two_workers):
    large = batch_start(caller, "create_twin", jsonl({"description": {"n": n}} for n in range(LARGE_LINES)))
    wait_for(
        lambda: Batch.objects.get(pk=large.pk).processed >= 2000,
        timeout=120,
        what="the large batch to be processing",
    )
    submitted = time.monotonic()
    small = batch_start(stranger, "create_twin", jsonl({"description": {"n": n}} for n in range(SMALL_LINES)))
    small = wait_terminal(small, timeout=60, worker=two_workers[0])
    waited = time.monotonic() - submitted
    large_now = Batch.objects.get(pk=large.pk)
    print(
        f"small batch of {SMALL_LINES} lines completed {waited:.2f} s after it was created, "
        f"with the large one at {large_now.processed} of {LARGE_LINES}"
    )
    assert small.status == S.COMPLETED
    assert waited < 5
    assert large_now.status == S.PROCESSING, "the large batch ended first: the test proves nothing"
    assert wait_terminal(large, timeout=300, worker=two_workers[0]).status == S.COMPLETED

"""What matters only on PostgreSQL: the list queries use their indexes, and several worker
processes share one batch. Skipped on SQLite, where writers take turns on one file."""

import socket

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from batches import selectors
from batches.models import Batch, BatchStatus, Chunk
from batchsite.celery import app as celery_app
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.infrastructure_faults import once_per_database
from tests.support.inline_pipeline import read_results
from tests.support.waiting import wait_for, wait_terminal
from tests.support.worker_processes import WorkerProcess
from twins.models import Twin

pytestmark = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="needs PostgreSQL",
)


def plan_of_batch_list(**query) -> str:
    """PostgreSQL's plan for the query that `batch_list` runs."""
    with CaptureQueriesContext(connection) as captured:
        selectors.batch_list(limit=1000, **query)
    (listing,) = [entry["sql"] for entry in captured.captured_queries if "batches_batch" in entry["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + listing)
        return "\n".join(row[0] for row in cursor.fetchall())


@once_per_database()
@pytest.mark.django_db
def test_batch_list_queries_are_answered_by_their_indexes(caller, stranger):
    """A busy account (many times the page size) beside another, its batches spread over a
    month and four statuses: the planner then weighs an index against a scan and a sort as it
    would in production. (For an account with a page or two of batches, any plan is cheap.)"""
    statuses = [BatchStatus.COMPLETED, BatchStatus.NEW, BatchStatus.CANCELLED, BatchStatus.PROCESSING]
    for account, count in ((caller.account, 30_000), (stranger.account, 2_000)):
        Batch.objects.bulk_create(
            (Batch(account=account, operation="create_twin", status=statuses[n % 4]) for n in range(count)),
            batch_size=5000,
        )
    with connection.cursor() as cursor:
        cursor.execute("UPDATE batches_batch SET created_at = now() - random() * interval '30 days'")
        cursor.execute("ANALYZE batches_batch")

    newest_first = plan_of_batch_list(account=caller.account)
    assert "batch_account_created" in newest_first, newest_first
    by_status = plan_of_batch_list(account=caller.account, status=BatchStatus.COMPLETED)
    assert "batch_account_status" in by_status, by_status
    first_page = selectors.batch_list(account=caller.account, limit=10)
    next_page = plan_of_batch_list(account=caller.account, cursor=first_page.cursor)
    assert "batch_account_created" in next_page, next_page
    for plan in (newest_first, by_status, next_page):
        assert "Sort" not in plan, f"the index should give the order:\n{plan}"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_share_the_chunks_of_one_batch(caller):
    lines, chunk_lines = 3000, 25
    celery_app.control.purge()
    workers = [
        WorkerProcess(
            node_name=f"{name}@%h",
            log_name=f"worker-{name}",
            extra_env={"BATCH_CHUNK_LINES": str(chunk_lines)},
        ).start()
        for name in ("first", "second")
    ]
    try:
        for worker in workers:
            wait_for(lambda worker=worker: "ready." in worker.log(), timeout=60, what="the worker to start")
        content = jsonl({"description": {"serial": n}} for n in range(lines))
        batch = wait_terminal(
            BatchFactory(caller=caller, content=content),
            timeout=180,
            worker=workers[0],
        )
    finally:
        for worker in workers:
            worker.discard()

    assert batch.status == BatchStatus.COMPLETED
    host = socket.gethostname()
    chunks_by_worker = {
        worker: Chunk.objects.filter(batch=batch, worker=worker).count()
        for worker in Chunk.objects.filter(batch=batch).values_list("worker", flat=True).distinct()
    }
    assert set(chunks_by_worker) == {f"first@{host}", f"second@{host}"}, chunks_by_worker
    assert sum(chunks_by_worker.values()) == lines // chunk_lines
    assert (batch.total, batch.processed, batch.succeeded, batch.failed) == (lines, lines, lines, 0)
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == list(range(1, lines + 1))
    assert [line["result"]["description"]["serial"] for line in results] == list(range(lines))
    assert Twin.objects.filter(account=caller.account).count() == lines

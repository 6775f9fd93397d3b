"""Batch controls on real Celery worker processes (docs/contract.md, section 11): error budgets stopping a
batch across several workers, a dry run of a large file, and results while running. They run
on whichever database and broker the suite runs on (SQLite + filesystem broker, or
PostgreSQL + Redis, where the workers' chunks truly run at once)."""

import threading

import pytest
from django.apps import apps
from django.core.files.storage import default_storage
from django.db import connection
from django.test import override_settings

from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline import chunks
from operating.models import UsageHour
from tests.support.batch_files import jsonl, updates
from tests.support.factories import BatchFactory, UploadFactory
from tests.support.infrastructure_faults import once_per_database
from tests.support.inline_pipeline import into_processing, read_results
from tests.support.waiting import wait_for, wait_terminal
from twins.models import Twin

S = BatchStatus
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def updated_twins(caller) -> int:
    return Twin.objects.filter(account=caller.account).exclude(description__n=0).count()


def test_a_failure_ratio_stops_within_one_chunk_on_two_workers(caller, worker_factory):
    """20 % of the lines fail, the budget allows 5 %: judged from line 100 on, it is passed by
    the commit that brings 100 lines. Chunks run at once on two workers; those that finish
    after the stop roll back, so exactly 100 lines ran, whichever chunks they were."""
    lines, chunk_lines = 4000, 50
    budget = {"max_failed_ratio": 0.05, "min_lines": 100}
    batch = BatchFactory(
        caller=caller,
        operation="update_twin",
        content=updates(caller, lines, bad_every=5),
        error_budget=budget,
    )
    settings = {"BATCH_CHUNK_LINES": str(chunk_lines)}
    first = worker_factory(log_name="worker-budget-a", node_name="budget-a@%h", extra_env=settings)
    worker_factory(log_name="worker-budget-b", node_name="budget-b@%h", extra_env=settings)

    batch = wait_terminal(batch, timeout=120, worker=first)
    assert batch.status == S.CANCELLED
    assert batch.failure_reason.startswith("error_budget_exceeded")
    assert batch.processed <= budget["min_lines"] + chunk_lines
    assert (batch.processed, batch.failed) == (100, 20)
    assert updated_twins(caller) == batch.succeeded == 80
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == list(range(1, lines + 1))
    ran = [line for line in results if line["status"] is not None]
    assert len(ran) == batch.processed
    assert sum(line["status"] == 404 for line in ran) == batch.failed
    assert all(line["error"]["subcode"] == "not_executed" for line in results if line["status"] is None)


def test_max_failed_zero_stops_at_the_first_failure(caller, worker_factory):
    content = updates(caller, 2000, first_bad=237)
    batch = BatchFactory(
        caller=caller, operation="update_twin", content=content, error_budget={"max_failed": 0}
    )
    worker = worker_factory(
        log_name="worker-budget-zero",
        concurrency=1,
        extra_env={"BATCH_CHUNK_LINES": "100", "BATCH_CANCEL_CHECK_LINES": "1"},
    )
    batch = wait_terminal(batch, timeout=120, worker=worker)
    assert batch.status == S.CANCELLED
    assert batch.failure_reason.startswith("error_budget_exceeded: 1 of 237 lines failed")
    assert (batch.processed, batch.failed) == (237, 1)
    assert updated_twins(caller) == 236
    results = read_results(batch.results_file)
    assert results[236]["status"] == 404
    assert all(line["status"] is None for line in results[237:])


def row_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def assert_dry_run_changes_nothing(caller, worker_factory, lines: int, timeout: float):
    content = jsonl({"description": {"serial": n}} for n in range(lines))
    upload = UploadFactory(caller=caller, content=content)
    before = row_counts()
    batch = BatchFactory(caller=caller, upload=upload, validate_only=True)
    worker = worker_factory(log_name="worker-dry-run")
    batch = wait_terminal(batch, timeout=timeout, worker=worker)
    assert batch.status == S.COMPLETED
    assert (batch.total, batch.processed) == (lines, 0)
    after = row_counts()
    # The batch, its status history, the account's bookkeeping (its quota row, the hour's
    # usage: a batch created) and the worker's own (its heartbeat, the periodic jobs' runs) are
    # the only new rows; no twin, ledger entry or chunk.
    changed = {label: after[label] - before[label] for label in after if after[label] != before[label]}
    assert set(changed) <= {
        "batches.Batch",
        "batches.BatchStatusChange",
        "batches.MaintenanceRun",
        "operating.AccountQuota",
        "operating.UsageHour",
        "operating.WorkerHeartbeat",
    }
    assert not UsageHour.objects.filter(account_id=caller.account.pk, batch_lines__gt=0).exists()
    assert changed["batches.Batch"] == 1
    assert not Chunk.objects.filter(batch=batch).exists()
    count = 0
    for count, record in enumerate(read_results(batch.results_file), start=1):
        assert record["line"] == count and record["status"] is None
        assert record["error"]["subcode"] == "validate_only"
    assert count == lines


def test_a_dry_run_of_a_large_file_changes_nothing_and_lists_every_line(caller, worker_factory):
    assert_dry_run_changes_nothing(caller, worker_factory, 100_000, timeout=300)


@pytest.mark.soak
def test_a_dry_run_of_a_million_lines_changes_nothing_and_lists_every_line(caller, worker_factory):
    assert_dry_run_changes_nothing(caller, worker_factory, 1_000_000, timeout=1800)


@once_per_database()
def test_a_partial_download_while_processing_holds_run_lines_equal_to_the_final_ones(caller, worker_factory):
    lines = 8_000
    batch = BatchFactory(caller=caller, operation="update_twin", content=updates(caller, lines, bad_every=7))
    # Ten-line chunks: each chunk's commit costs milliseconds, so half the lines take about a
    # second to run whatever the speed per line, and the test sees the batch half run.
    worker = worker_factory(log_name="worker-partial", extra_env={"BATCH_CHUNK_LINES": "10"})

    def partial_url():
        current = Batch.objects.get(pk=batch.pk)
        if current.status != S.PROCESSING or not 0 < current.processed < lines / 2:
            return None
        body = caller.client.get(f"/batches/{batch.pk}?download=true").json()
        return body["download"] if body["status"] == S.PROCESSING else None

    download = wait_for(partial_url, timeout=120, interval=0.05, what="a partial download while processing")
    assert download["partial"] is True
    response = caller.client.get(download["url"].replace("http://testserver", ""))
    assert response.status_code == 200
    partial = b"".join(response.streaming_content).decode().splitlines()

    batch = wait_terminal(batch, timeout=300, worker=worker)
    assert batch.status == S.COMPLETED
    with default_storage.open(batch.results_file, "rb") as results:
        final = results.read().decode().splitlines()
    numbers = [int(line.split(",", 1)[0].removeprefix('{"line":')) for line in partial]
    assert 0 < len(partial) < lines
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert all(final[number - 1] == line for number, line in zip(numbers, partial, strict=True))
    assert all('"status":null' not in line for line in partial)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="chunks run at once only on PostgreSQL")
@override_settings(BATCH_CHUNK_LINES=10)
def test_a_chunk_running_when_another_passes_the_budget_rolls_back(caller, monkeypatch):
    """Chunk 0 runs its lines in a thread and waits; meanwhile chunk 1 passes the budget and
    stops the batch. Chunk 0 then finds the batch stopped by the budget and applies nothing."""
    content = updates(caller, 20, bad_every=2)
    batch = BatchFactory(
        caller=caller, operation="update_twin", content=content, error_budget={"max_failed": 3}
    )
    runner = into_processing(batch)

    first_ran, stop_committed = threading.Event(), threading.Event()
    original = chunks.run_lines

    def run_lines(batch_, operation, user, pairs):
        lines = original(batch_, operation, user, pairs)
        if threading.current_thread().name == "chunk-0":
            first_ran.set()
            assert stop_committed.wait(30)
        return lines

    monkeypatch.setattr(chunks, "run_lines", run_lines)

    def first_chunk():
        try:
            chunks.chunk_claim_and_run(batch.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=first_chunk, name="chunk-0")
    thread.start()
    assert first_ran.wait(30)
    assert chunks.chunk_claim_and_run(batch.pk)  # chunk 1: 5 failures, past max_failed 3
    assert Batch.objects.get(pk=batch.pk).status == S.CANCEL
    stop_committed.set()
    thread.join(30)

    done = dict(Chunk.objects.filter(batch=batch).values_list("index", "done"))
    assert done == {0: False, 1: True}
    assert set(
        Twin.objects.filter(account=caller.account)
        .exclude(description__n=0)
        .values_list("description__n", flat=True)
    ) == {11, 13, 15, 17, 19}
    runner.drain()
    runner.advance(batch)
    runner.drain()
    batch.refresh_from_db()
    assert batch.status == S.CANCELLED and batch.processed == 10
    results = read_results(batch.results_file)
    assert [line["status"] for line in results[:10]] == [None] * 10

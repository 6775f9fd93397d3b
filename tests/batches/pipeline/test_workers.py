"""The pipeline on real Celery worker processes: crash recovery, cancel, and a batch leaving
the same results and state as single calls. These run on whichever database and broker the
suite runs on (SQLite + filesystem broker, or PostgreSQL + Redis)."""

import re
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from batches import services
from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline import chunks
from batches.statuses import TERMINAL
from batchsite.errors import Conflict
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import into_processing, read_results, run_batch
from tests.support.waiting import wait_for, wait_terminal
from twins.models import Twin

S = BatchStatus
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_every_ending_on_a_real_worker(caller, worker_factory):
    """hash_mismatch, validation_failed (with line numbers), completed and then deleted."""
    worker = worker_factory(log_name="worker-endings")
    mismatch = BatchFactory(caller=caller, content=jsonl([{}]), hash="0" * 64)
    invalid = BatchFactory(caller=caller, content=b'{}\n{"description": 1}\n{}\n{broken\n')
    completed = BatchFactory(caller=caller, content=jsonl([{"description": {"n": n}} for n in range(3)]))

    assert wait_terminal(mismatch, timeout=60, worker=worker).status == S.HASH_MISMATCH
    invalid = wait_terminal(invalid, timeout=60, worker=worker)
    assert invalid.status == S.VALIDATION_FAILED
    assert [line["line"] for line in read_results(invalid.results_file)] == [2, 4]
    completed = wait_terminal(completed, timeout=60, worker=worker)
    assert completed.status == S.COMPLETED
    assert Twin.objects.filter(account=caller.account).count() == 3

    services.batch_delete(batch=completed)
    wait_for(lambda: not Batch.objects.filter(pk=completed.pk).exists(), timeout=60, what="the deletion")
    assert caller.client.get(f"/batches/{completed.pk}").status_code == 404


def test_killed_worker_loses_nothing_and_applies_nothing_twice(caller, worker_factory):
    lines = 50_000
    batch = BatchFactory(
        caller=caller,
        content=jsonl({"description": {"serial": n}} for n in range(lines)),
    )
    first = worker_factory(log_name="worker-killed")
    wait_for(
        lambda: Batch.objects.get(pk=batch.pk).processed >= 5_000,
        timeout=240,
        what="processing to be under way",
    )
    first.kill()
    killed_at = Batch.objects.get(pk=batch.pk)
    assert killed_at.status == S.PROCESSING
    assert killed_at.processed < lines, "the kill came too late to prove anything"

    second = worker_factory(log_name="worker-after-kill")
    batch = wait_terminal(batch, timeout=300, worker=second)
    assert batch.status == S.COMPLETED
    assert Twin.objects.filter(account=caller.account).count() == lines
    assert (batch.total, batch.processed, batch.succeeded, batch.failed) == (lines, lines, lines, 0)
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == list(range(1, lines + 1))
    assert {line["result"]["creation_certificate"]["uuid"] for line in results} == {
        str(pk) for pk in Twin.objects.filter(account=caller.account).values_list("pk", flat=True)
    }


def test_cancel_reaches_a_running_batch_and_accounts_for_every_line(caller, worker_factory):
    # Two worker processes run ~25,000 such lines a second on PostgreSQL: this many leave
    # seconds between the first chunk's commit and the last.
    lines = 100_000
    batch = BatchFactory(
        caller=caller,
        content=jsonl({"description": {"serial": n}} for n in range(lines)),
    )
    worker = worker_factory(log_name="worker-cancel")
    wait_for(
        lambda: Batch.objects.get(pk=batch.pk).processed > 0, timeout=120, interval=0.02, what="processing"
    )
    services.batch_cancel(batch=batch)
    batch = wait_terminal(batch, timeout=60, worker=worker)
    assert batch.status == S.CANCELLED
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == list(range(1, lines + 1))
    executed = [line for line in results if line["status"] is not None]
    assert len(executed) == batch.processed == Twin.objects.filter(account=caller.account).count()
    assert batch.processed < lines
    assert all(line["error"]["subcode"] == "not_executed" for line in results if line["status"] is None)


EQUIVALENCE_STEPS = [
    (
        "update_twin",
        lambda twins: [
            {"twin": twins[0], "description": {"colour": "red", "n": None}},
            {"twin": UNKNOWN_TWIN, "description": {"a": 1}},
            {"twin": twins[1], "description": {"colour": "blue"}},
        ],
    ),
    (
        "add_twin_ledger_entry",
        lambda twins: [
            {"twin": twins[1], "entries": {"size": {"value": 3}}},
            {"twin": twins[1], "entries": {"size": {"value": 4}}},
            {"twin": twins[2], "ledger": "personal", "entries": {"size": {"value": [1, 2]}}},
        ],
    ),
    (
        "terminate_twin",
        lambda twins: [{"twin": twins[2]}, {"twin": twins[2]}],
    ),
    (
        "update_twin",
        lambda twins: [{"twin": twins[2], "description": {"late": True}}],
    ),
]
UNKNOWN_TWIN = "00000000-0000-4000-8000-000000000000"
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_batch_results_equal_single_call_results(make_caller, worker_factory):
    """The same lines as batches on one account and as single calls on another account with
    the same starting state: statuses and bodies match once ids and times are set aside."""
    batch_caller, single_caller = make_caller(), make_caller()
    worker = worker_factory(log_name="worker-equivalence")

    def seed(caller):
        created = BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(3)))
        created = wait_terminal(created, timeout=60, worker=worker)
        return [line["result"]["creation_certificate"]["uuid"] for line in read_results(created.results_file)]

    batch_twins, single_twins = seed(batch_caller), seed(single_caller)
    for operation, lines_for in EQUIVALENCE_STEPS:
        batch = BatchFactory(caller=batch_caller, operation=operation, content=jsonl(lines_for(batch_twins)))
        batch = wait_terminal(batch, timeout=60, worker=worker)
        assert batch.status == S.COMPLETED, batch.failure_reason
        batch_outcomes = [
            (line["status"], line.get("result", line.get("error")))
            for line in read_results(batch.results_file)
        ]
        single_outcomes = []
        for line in lines_for(single_twins):
            response = single_call(single_caller.client, operation, line)
            body = response.json()
            body.pop("trace", None)
            single_outcomes.append((response.status_code, body))
        assert without_ids(batch_outcomes) == without_ids(single_outcomes), operation


def single_call(client: APIClient, operation: str, line: dict):
    twin = line["twin"]
    if operation == "update_twin":
        return client.patch(f"/twins/{twin}", {"description": line["description"]}, format="json")
    if operation == "add_twin_ledger_entry":
        ledger = line.get("ledger", "personal")
        return client.post(f"/twins/{twin}/ledgers/{ledger}", {"entries": line["entries"]}, format="json")
    if operation == "terminate_twin":
        return client.delete(f"/twins/{twin}")
    raise AssertionError(operation)


def without_ids(value):
    """Ids and times differ between the two accounts; everything else must not."""
    if isinstance(value, dict):
        return {key: without_ids(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_ids(item) for item in value]
    if isinstance(value, float):
        return "<time>"
    if isinstance(value, str):
        return UUID_TEXT.sub("<uuid>", value)
    return value


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the race needs PostgreSQL's row locks")
def test_cancel_racing_completion_yields_one_outcome(caller):
    """Threads race a cancel against the step that completes the batch; whichever wins, the
    batch ends in exactly one terminal status with a whole results file."""
    outcomes = set()
    for _ in range(8):
        batch = BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(4)))
        into_processing(batch)
        while chunks.chunk_claim_and_run(batch.pk):
            pass
        barrier = threading.Barrier(2)

        def cancel(batch=batch, barrier=barrier):
            barrier.wait()
            try:
                services.batch_cancel(batch=batch)
            except Conflict:
                pass
            finally:
                connection.close()

        def complete(batch=batch, barrier=barrier):
            barrier.wait()
            try:
                run_batch(batch)
            finally:
                connection.close()

        threads = [threading.Thread(target=cancel), threading.Thread(target=complete)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        batch = run_batch(batch)
        terminal = [
            status for status in batch.history.values_list("to_status", flat=True) if status in TERMINAL
        ]
        assert len(terminal) == 1, terminal
        assert batch.status in (S.COMPLETED, S.CANCELLED)
        assert len(read_results(batch.results_file)) == 4
        assert not Chunk.objects.filter(batch=batch, done=False).exists()
        outcomes.add(batch.status)
    assert outcomes <= {S.COMPLETED, S.CANCELLED}

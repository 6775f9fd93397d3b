"""The pipeline run through its driver in this process, step by step: every status path, file
forms, outcomes, cancel at each stage, delete, permissions at execution time, and the progress
invariant."""

import gzip
import hashlib
import uuid

import pytest
from django.core.files.storage import default_storage
from django.test import override_settings

from batches import services
from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline import chunks, driver
from batches.pipeline.copying import step_copy
from batches.pipeline.lease import Lease
from batches.states import batch_transition
from permissions import services as permission_services
from tests.support.batch_files import jsonl, twin_lines
from tests.support.factories import HAPPY_PATH, BatchFactory
from tests.support.inline_pipeline import (
    InlinePipeline,
    first_chunk_run,
    history,
    into_processing,
    read_results,
    run_batch,
    stop_after_first_chunk,
)
from twins.models import Twin

S = BatchStatus


def assert_progress_true(batch):
    assert batch.succeeded + batch.failed == batch.processed
    assert batch.total is None or batch.processed <= batch.total


def test_completed_batch_runs_every_line_in_order(caller):
    batch = run_batch(BatchFactory(caller=caller, content=twin_lines(5)))
    assert batch.status == S.COMPLETED
    assert history(batch) == HAPPY_PATH
    assert "reason" not in caller.client.get(f"/batches/{batch.pk}").json()
    assert (batch.total, batch.processed, batch.succeeded, batch.failed) == (5, 5, 5, 0)
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == [1, 2, 3, 4, 5]
    assert all(line["status"] == 201 for line in results)
    assert [line["result"]["description"]["serial"] for line in results] == [0, 1, 2, 3, 4]
    created = {line["result"]["creation_certificate"]["uuid"] for line in results}
    assert created == {
        str(pk) for pk in Twin.objects.filter(account=caller.account).values_list("pk", flat=True)
    }
    assert read_results(batch.errors_file) == []


def test_upload_is_spent_and_the_batch_owns_its_copy(caller):
    batch = run_batch(BatchFactory(caller=caller, content=twin_lines(2)))
    assert batch.upload.file_name == ""
    assert default_storage.exists(batch.input_file)
    with default_storage.open(batch.input_file, "rb") as copy:
        assert copy.read() == twin_lines(2)


def test_blank_lines_are_skipped_but_counted(caller):
    content = b'\n{"description": {"a": 1}}\n\n\n{"description": {"a": 2}}\n'
    batch = run_batch(BatchFactory(caller=caller, content=content))
    assert batch.total == 2
    assert [line["line"] for line in read_results(batch.results_file)] == [2, 5]


def test_matching_hash_completes_and_is_kept(caller):
    content = twin_lines(3)
    digest = hashlib.sha256(content).hexdigest()
    batch = run_batch(BatchFactory(caller=caller, content=content, hash=digest))
    assert batch.status == S.COMPLETED
    assert batch.computed_hash == digest


def test_hash_mismatch_keeps_no_copy_and_runs_nothing(caller):
    batch = run_batch(BatchFactory(caller=caller, content=twin_lines(3), hash="0" * 64))
    assert batch.status == S.HASH_MISMATCH
    assert history(batch) == [S.NEW, S.COPYING, S.HASH_MISMATCH]
    assert batch.input_file == ""
    assert not default_storage.exists(f"batches/{batch.account_id}/{batch.pk}/input")
    assert batch.upload.file_name == ""
    assert Twin.objects.count() == 0
    assert batch.computed_hash == hashlib.sha256(twin_lines(3)).hexdigest()
    body = caller.client.get(f"/batches/{batch.pk}").json()
    assert body["status"] == "hash_mismatch"
    assert "does not match" in body["reason"]


def test_validation_failure_lists_each_bad_line_and_runs_nothing(caller):
    content = b"\n".join(
        [
            b'{"description": {"ok": 1}}',
            b"{not json",
            b'{"description": {"ok": 2}}',
            b'{"description": {"Bad-Key": 1}}',
            b'{"description": "not an object"}',
        ]
    )
    batch = run_batch(BatchFactory(caller=caller, content=content))
    assert batch.status == S.VALIDATION_FAILED
    assert history(batch)[-1] == S.VALIDATION_FAILED
    report = read_results(batch.results_file)
    assert [line["line"] for line in report] == [2, 4, 5]
    assert all(line["status"] == 400 for line in report)
    assert report[0]["error"]["subcode"] == "invalid_json"
    assert "Bad-Key" in report[1]["error"]["description"]
    assert "3 of 5 lines are invalid" in batch.failure_reason
    assert caller.client.get(f"/batches/{batch.pk}").json()["reason"] == batch.failure_reason
    assert Twin.objects.count() == 0


@override_settings(VALIDATION_REPORT_MAX_LINES=2)
def test_validation_report_is_capped_and_says_how_many(caller):
    batch = run_batch(BatchFactory(caller=caller, content=b"{bad\n" * 5))
    assert len(read_results(batch.results_file)) == 2
    assert "5 of 5 lines are invalid; the first 2 are listed" in batch.failure_reason


def test_unreadable_file_fails_validation_with_the_reason(caller):
    content = gzip.compress(twin_lines(200))[:-30]
    batch = run_batch(BatchFactory(caller=caller, content=content))
    assert batch.status == S.VALIDATION_FAILED
    assert "decompressed" in batch.failure_reason


@override_settings(BATCH_MAX_LINES=3)
def test_too_many_lines_fail_validation(caller):
    batch = run_batch(BatchFactory(caller=caller, content=twin_lines(4)))
    assert batch.status == S.VALIDATION_FAILED
    assert "more than 3 lines" in batch.failure_reason


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'description\n"{""serial"": 1}"\n"{""serial"": 2}"\n', "text/csv"),
        (b'description\n"{""serial"": 1}"\n"{""serial"": 2}"\n', "application/octet-stream"),
        (gzip.compress(b'{"description": {"serial": 1}}\n{"description": {"serial": 2}}\n'), ""),
        (gzip.compress(b'description\n"{""serial"": 1}"\n"{""serial"": 2}"\n'), "application/gzip"),
    ],
    ids=["csv-by-type", "csv-by-first-byte", "gzip-jsonl", "gzip-csv"],
)
def test_csv_and_gzip_inputs(caller, content, content_type):
    batch = run_batch(BatchFactory(caller=caller, content=content, content_type=content_type))
    assert batch.status == S.COMPLETED, batch.failure_reason
    results = read_results(batch.results_file)
    assert [line["result"]["description"] for line in results] == [{"serial": 1}, {"serial": 2}]


def test_mixed_outcomes_are_counted_and_reported_per_line(caller, stranger):
    mine = [
        line["result"]["creation_certificate"]["uuid"]
        for line in read_results(run_batch(BatchFactory(caller=caller, content=twin_lines(2))).results_file)
    ]
    foreign = run_batch(BatchFactory(caller=stranger, content=twin_lines(1)))
    foreign_twin = read_results(foreign.results_file)[0]["result"]["creation_certificate"]["uuid"]
    lines = [
        {"twin": mine[0], "description": {"colour": "red"}},
        {"twin": str(uuid.uuid4()), "description": {"colour": "red"}},
        {"twin": foreign_twin, "description": {"colour": "red"}},
        {"twin": mine[1], "description": {"colour": "blue"}},
    ]
    batch = run_batch(BatchFactory(caller=caller, operation="update_twin", content=jsonl(lines)))
    assert batch.status == S.COMPLETED
    assert (batch.processed, batch.succeeded, batch.failed) == (4, 2, 2)
    results = read_results(batch.results_file)
    assert [line["status"] for line in results] == [200, 404, 404, 200]
    assert results[1]["error"]["subcode"] == "not_found"
    assert [line["line"] for line in read_results(batch.errors_file)] == [2, 3]
    assert Twin.objects.get(pk=foreign_twin).description == {"serial": 0}


@override_settings(BATCH_CHUNK_LINES=3)
def test_chunks_cover_every_line_once_and_progress_stays_true(caller):
    batch = BatchFactory(caller=caller, content=twin_lines(10))
    runner = InlinePipeline()
    runner.advance(batch)
    while runner.step():
        assert_progress_true(Batch.objects.get(pk=batch.pk))
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.COMPLETED
    assert Chunk.objects.filter(batch=batch).count() == 4
    assert [line["line"] for line in read_results(batch.results_file)] == list(range(1, 11))


def all_not_executed(results, count):
    assert [line["line"] for line in results] == list(range(1, count + 1))
    assert all(line["status"] is None and line["error"]["subcode"] == "not_executed" for line in results)


@pytest.mark.parametrize("stage", [S.NEW, S.COPYING, S.COPIED, S.VALIDATING])
def test_cancel_before_processing_runs_nothing_and_lists_every_line(caller, stage):
    batch = BatchFactory(caller=caller, content=twin_lines(4))
    runner = InlinePipeline()
    runner.advance(batch)
    if stage != S.NEW:
        # Stop the worker right after it entered the stage, as a cancel arriving mid-step.
        while Batch.objects.get(pk=batch.pk).status != stage:
            driver.batch_step(batch.pk, runner.enqueue)
    services.batch_cancel(batch=batch)
    runner.drain()
    runner.advance(batch)
    runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.CANCELLED
    assert history(batch)[-3:] == [S.CANCEL, S.CANCELLING, S.CANCELLED]
    assert Twin.objects.count() == 0
    all_not_executed(read_results(batch.results_file), 4)


@override_settings(BATCH_CHUNK_LINES=2)
def test_cancel_during_processing_keeps_executed_lines_and_reports_the_rest(caller):
    batch = BatchFactory(caller=caller, content=twin_lines(7))
    runner = first_chunk_run(batch)
    services.batch_cancel(batch=batch)
    assert not chunks.chunk_claim_and_run(batch.pk), "no chunk starts after a cancel"
    runner.advance(batch)
    runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.CANCELLED
    assert (batch.processed, batch.succeeded) == (2, 2)
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == list(range(1, 8))
    assert [line["status"] for line in results] == [201, 201, None, None, None, None, None]
    assert Twin.objects.count() == 2
    assert len(read_results(batch.errors_file)) == 5


@override_settings(BATCH_CHUNK_LINES=10, BATCH_CANCEL_CHECK_LINES=2)
def test_cancel_is_seen_between_lines_of_a_running_chunk(caller, monkeypatch):
    batch = BatchFactory(caller=caller, content=twin_lines(8))
    runner = into_processing(batch)
    looks = []

    def cancel_on_second_look(batch_id):
        looks.append(batch_id)
        if len(looks) == 2:
            batch_transition(batch_id=batch_id, to=S.CANCEL)
        return chunks.GroupStop(Batch.objects.get(pk=batch_id).status != S.PROCESSING, "")

    monkeypatch.setattr(chunks, "group_stop", cancel_on_second_look)
    assert chunks.chunk_claim_and_run(batch.pk)
    chunk = Chunk.objects.get(batch=batch)
    assert chunk.done and chunk.executed_count == 4
    monkeypatch.undo()
    runner.advance(batch)
    runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.CANCELLED
    assert [line["status"] for line in read_results(batch.results_file)] == [201] * 4 + [None] * 4


def test_a_step_that_lost_the_race_to_a_cancel_changes_nothing(caller):
    batch = BatchFactory(caller=caller, content=twin_lines(2))
    batch_transition(batch_id=batch.pk, to=S.COPYING)
    lease = Lease(batch_id=batch.pk, status=S.COPYING)
    assert lease.acquire()
    services.batch_cancel(batch=batch)
    assert step_copy(Batch.objects.get(pk=batch.pk), lease) is None
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.CANCEL
    assert batch.input_file == ""
    assert default_storage.listdir(f"batches/{batch.account_id}/{batch.pk}")[1] == []


@override_settings(BATCH_CHUNK_LINES=2)
def test_lines_run_with_the_creators_permissions_at_execution_time(caller):
    batch = BatchFactory(caller=caller, content=twin_lines(5))
    runner = first_chunk_run(batch)
    permission_services.role_update(
        role=caller.role, statement={"effect": "deny", "actions": ["create_twin"]}
    )
    runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.COMPLETED
    results = read_results(batch.results_file)
    assert [line["status"] for line in results] == [201, 201, 403, 403, 403]
    assert results[2]["error"]["subcode"] == "action_not_allowed"
    assert Twin.objects.count() == 2


def test_deleting_a_finished_batch_removes_its_files_and_row(caller):
    batch = run_batch(BatchFactory(caller=caller, content=twin_lines(2)))
    files = [batch.input_file, batch.results_file, batch.errors_file]
    assert all(default_storage.exists(name) for name in files)
    services.batch_delete(batch=batch)
    run_batch(batch)
    assert not Batch.objects.filter(pk=batch.pk).exists()
    assert not any(default_storage.exists(name) for name in files)


@override_settings(BATCH_CHUNK_LINES=2)
def test_deleting_a_running_batch_cancels_it_then_deletes_it(caller):
    batch = BatchFactory(caller=caller, content=twin_lines(6))
    assert stop_after_first_chunk(batch, stop=services.batch_delete) is None
    assert Twin.objects.count() == 2, "lines executed before the stop stay applied"


def test_a_second_delivery_of_a_finished_batch_does_nothing(caller):
    batch = run_batch(BatchFactory(caller=caller, content=twin_lines(3)))
    before = history(batch)
    run_batch(batch)
    assert history(batch) == before
    assert Twin.objects.count() == 3


def test_a_second_run_of_a_done_chunk_applies_nothing_twice(caller):
    batch = BatchFactory(caller=caller, content=twin_lines(3))
    first_chunk_run(batch)
    assert not chunks.chunk_claim_and_run(batch.pk)
    assert Twin.objects.count() == 3
    assert Batch.objects.get(pk=batch.pk).processed == 3


@override_settings(BATCH_CHUNK_LINES=2)
def test_lines_that_never_ran_keep_their_numbers_across_blank_lines(caller):
    content = b'{"description": {}}\n\n{"description": {}}\n{"description": {}}\n\n\n{"description": {}}\n'
    batch = stop_after_first_chunk(BatchFactory(caller=caller, content=content))
    results = read_results(batch.results_file)
    assert [(line["line"], line["status"]) for line in results] == [(1, 201), (3, 201), (4, None), (7, None)]
    assert [line["line"] for line in read_results(batch.errors_file)] == [4, 7]


@override_settings(BATCH_CHUNK_LINES=1, BATCH_CHUNK_WORKERS=1, BATCH_SLICE_SECONDS=0)
def test_a_large_batch_shares_the_workers_with_a_later_one(caller, stranger):
    """A chunk task's next chunk goes to the account that has had the fewest lines run: the
    second tenant's batch finishes while the first, larger one is still running."""
    large = BatchFactory(caller=caller, content=twin_lines(12))
    small = BatchFactory(caller=stranger, content=twin_lines(2))
    runner = InlinePipeline()
    runner.advance(large)
    runner.run_until(large, S.PROCESSING)
    runner.advance(small)
    runner.run_until(small, S.COMPLETED)
    assert Batch.objects.get(pk=large.pk).status == S.PROCESSING
    assert 0 < Batch.objects.get(pk=large.pk).processed < 12
    runner.drain()
    assert Batch.objects.get(pk=large.pk).status == S.COMPLETED
    assert [line["line"] for line in read_results(Batch.objects.get(pk=large.pk).results_file)] == list(
        range(1, 13)
    )

"""Validation a chunk at a time (batches.pipeline.validating), in this process: the chunk
workers check a large JSON Lines file's chunks in parallel, and the batch ends exactly as the
single pass ends it - the same status, reason, report and dry-run results - with no line run
before every line is valid."""

import gzip
import json

import pytest
from django.core.files.storage import default_storage
from django.db import DatabaseError
from django.db.models import QuerySet
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batches import services
from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline import chunks
from batches.pipeline.retrying import lines_to_retry
from tests.support.batch_files import jsonl
from tests.support.factories import HAPPY_PATH, BatchFactory
from tests.support.inline_pipeline import InlinePipeline, history, read_results, run_batch
from twins.models import Twin

S = BatchStatus
IN_PARALLEL = override_settings(BATCH_VALIDATE_PARALLEL_MIN_LINES=1, BATCH_CHUNK_LINES=4)
IN_ONE_PASS = override_settings(BATCH_VALIDATE_PARALLEL_MIN_LINES=10**9, BATCH_CHUNK_LINES=4)
VALID = b'{"description": {"n": 1}}'
LINE_KINDS = st.sampled_from(
    [
        VALID,
        b'{"description": {"n": 2}}',
        b"",
        b"{broken",
        b'{"description": "not an object"}',
        b'{"unknown_field": 1}',
        b"[1]",
    ]
)


def file_text(name: str) -> str:
    if not name:
        return ""
    with default_storage.open(name, "rb") as stored:
        return stored.read().decode()


def ending(batch: Batch) -> tuple:
    return (batch.status, batch.failure_reason, batch.total, file_text(batch.results_file))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE_KINDS, max_size=30), final_break=st.booleans())
def test_a_dry_run_ends_as_the_single_pass_ends_it(caller, lines, final_break, caplog):
    content = b"\n".join(lines) + (b"\n" if final_break else b"")
    with IN_ONE_PASS:
        one_pass = run_batch(BatchFactory(caller=caller, content=content, validate_only=True))
    caplog.clear()
    with IN_PARALLEL, caplog.at_level("INFO", logger="batches.pipeline.validating"):
        parallel = run_batch(BatchFactory(caller=caller, content=content, validate_only=True))
    assert ending(parallel) == ending(one_pass)
    assert ("in parallel" in caplog.text) == bool(content)
    assert not Chunk.objects.filter(batch_id=parallel.pk).exists()
    assert not Twin.objects.filter(account=caller.account).exists()


def test_a_batch_validated_in_parallel_runs_every_line_once(caller):
    content = b"\n".join([VALID, b"", *[b'{"description": {"n": %d}}' % n for n in range(2, 30)], b"", VALID])
    with IN_PARALLEL:
        batch = run_batch(BatchFactory(caller=caller, content=content))
    assert batch.status == S.COMPLETED
    assert history(batch) == HAPPY_PATH
    numbers = [n for n, line in enumerate(content.split(b"\n"), start=1) if line]
    assert (batch.total, batch.processed, batch.succeeded) == (len(numbers),) * 3
    results = read_results(batch.results_file)
    assert [result["line"] for result in results] == numbers
    assert {result["status"] for result in results} == {201}
    assert Twin.objects.filter(account=caller.account).count() == len(numbers)
    assert batch.prepared_file == ""
    assert set(Chunk.objects.filter(batch_id=batch.pk).values_list("prepared", "results").distinct()) == {
        ("", "")
    }


def test_one_bad_line_in_the_last_chunk_fails_the_batch_before_any_line_runs(caller):
    lines = [VALID] * 21 + [b"{broken"]
    with IN_PARALLEL:
        batch = run_batch(BatchFactory(caller=caller, content=b"\n".join(lines) + b"\n"))
    assert batch.status == S.VALIDATION_FAILED
    assert batch.failure_reason == "1 of 22 lines are invalid; each is listed."
    assert [(line["line"], line["error"]["subcode"]) for line in read_results(batch.errors_file)] == [
        (22, "invalid_json")
    ]
    assert not Twin.objects.filter(account=caller.account).exists()
    assert not Chunk.objects.filter(batch_id=batch.pk).exists()


@override_settings(VALIDATION_REPORT_MAX_LINES=3)
def test_the_report_lists_the_first_bad_lines_across_chunks(caller):
    lines = [VALID, b"{a", b"{b", VALID, VALID, b"{c", b"{d", b"{e", VALID, b"[1]"]
    with IN_PARALLEL:
        batch = run_batch(BatchFactory(caller=caller, content=b"\n".join(lines)))
    assert batch.failure_reason == "6 of 10 lines are invalid; the first 3 are listed."
    assert [line["line"] for line in read_results(batch.errors_file)] == [2, 3, 6]


def test_a_cancel_while_chunks_are_checked_runs_nothing_and_lists_every_line(caller):
    content = jsonl({"description": {"n": n}} for n in range(20))
    with IN_PARALLEL:
        batch = BatchFactory(caller=caller, content=content)
        runner = InlinePipeline()
        runner.advance(batch)
        runner.run_until(batch, S.VALIDATING)
        while not Chunk.objects.filter(batch_id=batch.pk).exists():
            assert runner.step()
        assert chunks.chunk_claim_and_validate(batch.pk)
        services.batch_cancel(batch=batch)
        runner.advance(batch)
        runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.CANCELLED
    assert [line["error"]["subcode"] for line in read_results(batch.results_file)] == ["not_executed"] * 20
    assert lines_to_retry(batch) == set(range(1, 21))
    assert not Twin.objects.filter(account=caller.account).exists()


def test_chunk_work_lost_after_the_cut_is_asked_for_again(caller):
    with IN_PARALLEL:
        batch = BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(10)))
        runner = InlinePipeline()
        runner.advance(batch)
        while not Chunk.objects.filter(batch_id=batch.pk).exists():
            assert runner.step()
        runner.pending.clear()
        assert Batch.objects.get(pk=batch.pk).status == S.VALIDATING
        assert chunks.unvalidated_chunks(batch.pk) == 3
        # What the sweep does for a batch no worker is moving.
        runner.advance(batch)
        runner.drain()
    assert Batch.objects.get(pk=batch.pk).status == S.COMPLETED
    assert Twin.objects.filter(account=caller.account).count() == 10


def test_a_chunk_is_checked_once_and_the_merge_waits_for_every_chunk(caller, monkeypatch):
    monkeypatch.setattr(chunks, "CHECKED_CHUNKS_PER_CLAIM", 1)
    with IN_PARALLEL:
        batch = BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(6)))
        runner = InlinePipeline()
        runner.advance(batch)
        while not Chunk.objects.filter(batch_id=batch.pk).exists():
            assert runner.step()
        assert chunks.chunk_claim_and_validate(batch.pk)
        assert Chunk.objects.filter(batch_id=batch.pk, validated=True).count() == 1
        first = Chunk.objects.get(batch_id=batch.pk, index=0)
        assert [json.loads(record.split("\t")[1]) for record in first.prepared.splitlines()] == [
            {"description": {"n": n}} for n in range(4)
        ]
        runner.pending.clear()
        runner.advance(batch)
        runner.step()
        assert Batch.objects.get(pk=batch.pk).status == S.VALIDATING
        assert chunks.chunk_claim_and_validate(batch.pk)
        assert not chunks.chunk_claim_and_validate(batch.pk)
        runner.pending.clear()
        runner.advance(batch)
        runner.drain()
    assert Batch.objects.get(pk=batch.pk).status == S.COMPLETED


@pytest.mark.parametrize("content_type", ["text/csv", "application/gzip"])
def test_files_that_cannot_be_cut_are_validated_in_one_pass(caller, content_type, caplog):
    content = b"description\n" + b'"{""n"": 1}"\n' * 8
    if content_type == "application/gzip":
        content = gzip.compress(jsonl({"description": {"n": n}} for n in range(8)))
    with IN_PARALLEL, caplog.at_level("INFO", logger="batches.pipeline.validating"):
        batch = run_batch(BatchFactory(caller=caller, content=content, content_type=content_type))
    assert "in parallel" not in caplog.text
    assert batch.status == S.COMPLETED, batch.failure_reason
    assert batch.prepared_file


def test_a_claim_checks_a_few_chunks_at_once(caller):
    with IN_PARALLEL:
        batch = BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(4 * 6)))
        runner = InlinePipeline()
        runner.advance(batch)
        while not Chunk.objects.filter(batch_id=batch.pk).exists():
            assert runner.step()
        assert chunks.chunk_claim_and_validate(batch.pk)
        checked = Chunk.objects.filter(batch_id=batch.pk, validated=True)
        assert sorted(checked.values_list("index", flat=True)) == list(range(chunks.CHECKED_CHUNKS_PER_CLAIM))


def test_the_checked_chunks_go_in_the_transaction_that_ends_a_dry_run(caller, monkeypatch):
    """Whoever sees the batch ended sees its chunks gone: a deletion that fails takes the
    transition with it, and the step asked for again ends the batch."""
    with IN_PARALLEL:
        batch = BatchFactory(
            caller=caller, content=jsonl({"description": {"n": n}} for n in range(10)), validate_only=True
        )
        runner = InlinePipeline()
        runner.advance(batch)
        while not Chunk.objects.filter(batch_id=batch.pk).exists():
            assert runner.step()
        while chunks.chunk_claim_and_validate(batch.pk):
            pass
        runner.pending.clear()
        real_delete = QuerySet.delete

        def failing_delete(queryset):
            if queryset.model is Chunk:
                raise DatabaseError("the connection dropped")
            return real_delete(queryset)

        monkeypatch.setattr(QuerySet, "delete", failing_delete)
        runner.advance(batch)
        with pytest.raises(DatabaseError):
            runner.step()
        assert Batch.objects.get(pk=batch.pk).status == S.VALIDATING
        assert Chunk.objects.filter(batch_id=batch.pk).count() == 3
        monkeypatch.undo()
        runner.advance(batch)
        runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert (batch.status, batch.total) == (S.COMPLETED, 10)
    assert not Chunk.objects.filter(batch_id=batch.pk).exists()

"""Lines the client can correlate (docs/contract.md, section 15): each result line carries its
line's id and echoed fields; a missing, malformed or repeated id fails validation, whether the
file is checked in one pass or a chunk at a time; the operation never sees the id field; and the
ids validation records are gone once it ends."""

import csv
import io
import json
import uuid
from urllib.parse import urlsplit

import pytest
from django.core.files.storage import default_storage

from batches import services
from batches.models import Batch, BatchStatus, Chunk, LineId
from batches.pipeline import chunks
from batches.pipeline.results import is_success_line
from batches.retry import batch_retry
from tests.support.batch_files import jsonl
from tests.support.factories import UploadFactory
from tests.support.inline_pipeline import InlinePipeline, read_results, run_batch, stop_after_first_chunk
from twins.models import Twin
from twins.services import twins_create

S = BatchStatus
CSV_LINES = 10_000
REGIONS = ("north", "south", "east")


def correlated_batch(
    caller,
    content: bytes,
    *,
    id_field="ref",
    echo_fields=None,
    operation="create_twin",
    content_type="application/x-ndjson",
    validate_only=False,
) -> Batch:
    upload = UploadFactory(caller=caller, content=content, content_type=content_type)
    batch, _ = services.batch_create(
        account=caller.account,
        user=caller.user,
        handler=str(upload.handler),
        operation=operation,
        id_field=id_field,
        echo_fields=echo_fields,
        validate_only=validate_only,
    )
    return batch


# A region cell a spreadsheet would run, on one line of the CSV upload.
FORMULA_AT = 7
FORMULA = '=HYPERLINK("x")'


def region_of(n: int) -> str:
    return FORMULA if n == FORMULA_AT else REGIONS[n % 3]


def csv_rows(refs: list[str]) -> bytes:
    """A create_twin CSV: ref, region and the twin's description, one row per ref."""
    rows = ["ref,region,description"]
    rows += [
        f'{ref},"{region_of(n).replace(chr(34), 2 * chr(34))}","{{""n"": {n}}}"' for n, ref in enumerate(refs)
    ]
    return ("\n".join(rows) + "\n").encode()


def csv_download(caller, batch: Batch) -> list[list[str]]:
    """The batch's results as the CSV download gives them, parsed by Python's csv module."""
    answer = caller.client.get(f"/batches/{batch.pk}", {"download": "true", "format": "csv"})
    assert answer.status_code == 200, answer.content
    response = caller.client.get(urlsplit(answer.json()["download"]["url"]).path)
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body, newline="")))


def errors_of(batch: Batch) -> list[tuple]:
    return [
        (line["line"], line["id"], line["error"]["subcode"], line["error"]["description"])
        for line in read_results(batch.errors_file)
    ]


def assert_summary_adds_up(batch: Batch) -> None:
    summary = batch.summary
    assert summary["succeeded"] + summary["failed"] + summary["not_executed"] == summary["total"]
    assert sum(entry["count"] for entry in summary["by_subcode"].values()) == (
        summary["failed"] + summary["not_executed"]
    )


def test_every_result_line_of_a_csv_upload_carries_its_id_and_echoed_cells(caller):
    refs = [f"r{n}" for n in range(CSV_LINES)]
    batch = run_batch(
        correlated_batch(caller, csv_rows(refs), content_type="text/csv", echo_fields=["ref", "region"])
    )
    assert batch.status == S.COMPLETED
    results = read_results(batch.results_file)
    assert len(results) == CSV_LINES
    for n, result in enumerate(results):
        assert list(result) == ["line", "status", "id", "input", "result"]
        assert result["line"] == n + 2
        assert result["status"] == 201
        assert result["id"] == f"r{n}"
        assert result["input"] == {"ref": f"r{n}", "region": region_of(n)}
        assert result["result"]["description"] == {"n": n}
    assert not LineId.objects.filter(batch_id=batch.pk).exists()

    header, *rows = csv_download(caller, batch)
    assert header == ["line", "id", "status", "subcode", "description", "result", "input.ref", "input.region"]
    assert len(rows) == CSV_LINES
    for n, row in enumerate(rows):
        line, line_id, status, _, _, result, echoed_ref, echoed_region = row
        assert (line, line_id, status, echoed_ref) == (str(n + 2), f"r{n}", "201", f"r{n}")
        assert echoed_region == ("'" + FORMULA if n == FORMULA_AT else REGIONS[n % 3])
        assert json.loads(result)["description"] == {"n": n}


def test_a_repeated_id_fails_validation_naming_the_line_that_used_it_first(caller):
    refs = [f"r{n}" for n in range(CSV_LINES)]
    refs[9_000] = refs[3]
    batch = run_batch(
        correlated_batch(caller, csv_rows(refs), content_type="text/csv", echo_fields=["region"])
    )
    assert batch.status == S.VALIDATION_FAILED
    assert batch.failure_reason == f"1 of {CSV_LINES} lines are invalid; each is listed."
    [error] = read_results(batch.errors_file)
    assert error == {
        "line": 9_002,
        "status": 400,
        "id": "r3",
        "input": {"region": REGIONS[9_000 % 3]},
        "error": {"subcode": "duplicate_id", "description": 'The id "r3" is already used by line 5.'},
    }
    assert batch.summary["by_subcode"]["duplicate_id"] == {"count": 1, "lines": [9_002]}
    assert batch.summary["not_executed"] == CSV_LINES - 1
    assert_summary_adds_up(batch)
    assert not Twin.objects.filter(account=caller.account).exists()
    assert not LineId.objects.filter(batch_id=batch.pk).exists()


def test_missing_and_malformed_ids_are_invalid_lines_listed_in_line_order(caller):
    lines = [
        {"ref": 7, "description": {}},
        {"description": {}},
        {"ref": True, "description": {}},
        {"ref": "7", "description": {}},
        {"ref": "x" * 129, "description": {}},
        {"ref": {"a": 1}, "description": {}},
        {"ref": 7, "description": {}},
        {"ref": 2.5, "description": {}},
        {"ref": "ok", "description": "not an object"},
    ]
    batch = run_batch(correlated_batch(caller, jsonl(lines)))
    assert batch.status == S.VALIDATION_FAILED
    assert [(line, id_, subcode) for line, id_, subcode, _ in errors_of(batch)] == [
        (2, None, "id_missing"),
        (3, None, "invalid_id"),
        (5, None, "invalid_id"),
        (6, None, "invalid_id"),
        # "7" and 7 are different ids; the second integer 7 repeats line 1's.
        (7, 7, "duplicate_id"),
        (8, None, "invalid_id"),
        (9, "ok", "invalid_input"),
    ]
    assert errors_of(batch)[0][3] == "The line has no 'ref' (the id field)."
    assert errors_of(batch)[4][3] == "The id 7 is already used by line 1."
    assert batch.summary["by_subcode"]["invalid_id"]["count"] == 4
    assert_summary_adds_up(batch)


def test_the_operation_never_sees_the_id_field(caller):
    # create_twin refuses a description that is not an object: it would refuse every line
    # if the id, a string, reached it under that name.
    batch = run_batch(
        correlated_batch(caller, jsonl({"description": f"d{n}"} for n in range(5)), id_field="description")
    )
    assert batch.status == S.COMPLETED
    results = read_results(batch.results_file)
    assert [(line["id"], line["status"]) for line in results] == [(f"d{n}", 201) for n in range(5)]
    assert (
        list(Twin.objects.filter(account=caller.account).values_list("description", flat=True)) == [None] * 5
    )


@pytest.fixture
def in_parallel(settings):
    settings.BATCH_VALIDATE_PARALLEL_MIN_LINES = 1
    settings.BATCH_CHUNK_LINES = 4


def refs_lines(refs: list) -> bytes:
    return jsonl({"ref": ref, "description": {"n": n}} for n, ref in enumerate(refs))


def test_a_repeated_id_is_found_across_chunks_checked_out_of_order(caller, in_parallel, settings):
    # Line 10 (third chunk) repeats line 2's id (first chunk); the third chunk is checked first.
    refs = [f"a{n}" for n in range(1, 13)]
    refs[9] = "a2"
    batch = correlated_batch(caller, refs_lines(refs), echo_fields=["ref"])
    runner = InlinePipeline()
    runner.advance(batch)
    while not Chunk.objects.filter(batch_id=batch.pk).exists():
        assert runner.step()
    # Another worker holds the first two chunks.
    held = Chunk.objects.filter(batch_id=batch.pk, index__lt=2)
    held.update(lease_owner="another worker", lease_expires_at="2999-01-01T00:00:00Z")
    assert chunks.chunk_claim_and_validate(batch.pk)
    assert list(Chunk.objects.filter(batch_id=batch.pk, validated=True).values_list("index", flat=True)) == [
        2
    ]
    assert sorted(LineId.objects.filter(batch_id=batch.pk).values_list("line", "key")) == [
        (9, '"a9"'),
        (10, '"a2"'),
        (11, '"a11"'),
        (12, '"a12"'),
    ]
    held.update(lease_owner="", lease_expires_at=None)
    runner.advance(batch)
    runner.drain()
    parallel = Batch.objects.get(pk=batch.pk)
    assert parallel.status == S.VALIDATION_FAILED
    assert errors_of(parallel) == [(10, "a2", "duplicate_id", 'The id "a2" is already used by line 2.')]
    assert not LineId.objects.filter(batch_id=batch.pk).exists()
    assert not Chunk.objects.filter(batch_id=batch.pk).exists()

    settings.BATCH_VALIDATE_PARALLEL_MIN_LINES = 10**9
    one_pass = run_batch(correlated_batch(caller, refs_lines(refs), echo_fields=["ref"]))
    assert file_text(parallel.errors_file) == file_text(one_pass.errors_file)
    assert (parallel.failure_reason, parallel.summary["by_subcode"]) == (
        one_pass.failure_reason,
        one_pass.summary["by_subcode"],
    )


def test_a_dry_run_in_parallel_lists_each_line_with_its_id(caller, in_parallel):
    batch = run_batch(
        correlated_batch(
            caller, refs_lines([f"a{n}" for n in range(10)]), echo_fields=["description"], validate_only=True
        )
    )
    assert batch.status == S.COMPLETED
    assert [
        (line["id"], line["input"], line["error"]["subcode"]) for line in read_results(batch.results_file)
    ] == [(f"a{n}", {"description": {"n": n}}, "validate_only") for n in range(10)]
    assert not LineId.objects.filter(batch_id=batch.pk).exists()


def file_text(name: str) -> str:
    with default_storage.open(name, "rb") as stored:
        return stored.read().decode()


def test_lines_a_cancel_left_unrun_carry_their_ids(caller, settings):
    settings.BATCH_CHUNK_LINES = 2
    batch = stop_after_first_chunk(
        correlated_batch(caller, refs_lines(["a", "b", "c", "d"]), echo_fields=["ref"])
    )
    assert batch.status == S.CANCELLED
    assert [(line["id"], line["input"], line["status"]) for line in read_results(batch.results_file)] == [
        ("a", {"ref": "a"}, 201),
        ("b", {"ref": "b"}, 201),
        ("c", {"ref": "c"}, None),
        ("d", {"ref": "d"}, None),
    ]


def test_a_cancel_while_chunks_are_checked_lists_ids_and_drops_the_recorded_ones(caller, in_parallel):
    batch = correlated_batch(caller, refs_lines([f"a{n}" for n in range(10)]))
    runner = InlinePipeline()
    runner.advance(batch)
    while not Chunk.objects.filter(batch_id=batch.pk).exists():
        assert runner.step()
    assert chunks.chunk_claim_and_validate(batch.pk)
    assert LineId.objects.filter(batch_id=batch.pk).exists()
    services.batch_cancel(batch=batch)
    runner.advance(batch)
    runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.CANCELLED
    assert [(line["id"], line["error"]["subcode"]) for line in read_results(batch.results_file)] == [
        (f"a{n}", "not_executed") for n in range(10)
    ]
    assert not LineId.objects.filter(batch_id=batch.pk).exists()


def updates_with_one_missing_twin(caller) -> bytes:
    """update_twin lines whose second names no twin (404 when run), each echoing a field named
    "result" after its ref."""
    twins = twins_create(account=caller.account, descriptions=[{}] * 3)
    targets = [twins[0].uuid, uuid.uuid4(), twins[2].uuid]
    return jsonl(
        {"ref": f"u{n}", "result": f"mine {n}", "twin": str(target), "description": {"n": n}}
        for n, target in enumerate(targets)
    )


def test_a_failed_line_echoing_a_field_named_result_is_counted_as_failed(caller):
    batch = run_batch(
        correlated_batch(
            caller,
            updates_with_one_missing_twin(caller),
            operation="update_twin",
            echo_fields=["ref", "result"],
        )
    )
    assert batch.status == S.COMPLETED
    assert (batch.summary["succeeded"], batch.summary["failed"]) == (2, 1)
    [failed] = read_results(batch.errors_file)
    assert failed["line"] == 2
    assert failed["input"] == {"ref": "u1", "result": "mine 1"}
    assert ',"result":' in file_text(batch.errors_file)
    assert not is_success_line(file_text(batch.errors_file))


def test_a_retry_keeps_the_ids_and_echoed_fields_of_its_lines(caller):
    batch = run_batch(
        correlated_batch(
            caller, updates_with_one_missing_twin(caller), operation="update_twin", echo_fields=["result"]
        )
    )
    retry, _ = batch_retry(batch=batch, user=caller.user)
    retry = run_batch(retry)
    assert (retry.id_field, retry.echo_fields) == ("ref", ["result"])
    assert retry.status == S.COMPLETED
    [line] = read_results(retry.results_file)
    assert (line["line"], line["id"], line["input"], line["status"]) == (1, "u1", {"result": "mine 1"}, 404)


def test_a_batch_without_correlation_writes_its_lines_as_before(caller, settings):
    settings.BATCH_CHUNK_LINES = 2
    batch = stop_after_first_chunk(correlated_batch(caller, jsonl([{"description": {}}] * 3), id_field=""))
    assert file_text(batch.results_file).splitlines()[2] == (
        '{"line":3,"status":null,"error":{"subcode":"not_executed",'
        '"description":"The batch was cancelled before this line ran."}}'
    )
    assert json.loads(file_text(batch.results_file).splitlines()[0]).keys() == {"line", "status", "result"}

"""Mixed batches (docs/contract.md, section 16): each line runs its own operation, later lines
use earlier lines' results through references, a line whose reference failed comes back 424,
and every rule of validation (references to earlier names only, names unique, each operation
valid and allowed) holds line by line."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from batches import services
from batches.models import BatchStatus, Chunk, LineRef
from batches.pipeline import chunks
from batches.pipeline.mixed import references_in
from batches.retry import batch_retry
from tests.support.batch_files import jsonl
from tests.support.factories import UploadFactory
from tests.support.inline_pipeline import into_processing, read_results, run_batch, stop_after_first_chunk
from tests.support.mixed_files import assert_devices_whole, device_lines
from twins.models import Identity, Twin

S = BatchStatus
pytestmark = pytest.mark.django_db


def mixed_batch(caller, lines: list[dict], **fields):
    upload = UploadFactory(caller=caller, content=jsonl(lines))
    batch, _ = services.batch_create(
        account=caller.account, user=caller.user, handler=str(upload.handler), operation="mixed", **fields
    )
    return batch


@override_settings(BATCH_CHUNK_LINES=10)
def test_each_line_runs_its_own_operation_on_the_result_it_refers_to(caller):
    batch = run_batch(mixed_batch(caller, device_lines(20)))
    assert batch.status == S.COMPLETED, batch.failure_reason
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == list(range(1, 61))
    assert {line["status"] for line in results} == {201}
    for n in range(20):
        twin = results[3 * n]["result"]["creation_certificate"]["uuid"]
        assert results[3 * n + 1]["result"]["identities"][f"RFID#D{n}"]["creation_certificate"]["identity"]
        assert results[3 * n + 2]["result"]["entries"]["installed"]["value"] == n
        assert caller.client.get(f"/resolve/RFID%23D{n}").json() == {"twins": [twin]}
    assert_devices_whole(caller, 20)
    # Chunks were cut where no reference crosses, so none waited on another.
    assert batch.summary["succeeded"] == 60


def test_a_line_whose_reference_failed_is_424_naming_that_line_and_the_rest_run(caller):
    blob = "x" * 30_000
    lines = [
        {"op": "create_twin", "ref": "big", "description": {"blob": blob}},
        {
            "op": "add_twin_ledger_entry",
            "twin": {"$ref": "big.creation_certificate.uuid"},
            "entries": {"a": {"value": 1}},
        },
        # Valid with its reference standing in; with the blob, past the description's limit.
        {
            "op": "create_twin",
            "ref": "t3",
            "description": {"pad": "y" * 40_000, "a": {"$ref": "big.description.blob"}},
        },
        {
            "op": "create_twin_identity",
            "twin": {"$ref": "t3.creation_certificate.uuid"},
            "identities": {"RFID#X": {}},
        },
        {
            "op": "add_twin_ledger_entry",
            "twin": {"$ref": "t3.creation_certificate.uuid"},
            "entries": {"b": {"value": 2}},
        },
        *device_lines(2),
    ]
    batch = run_batch(mixed_batch(caller, lines))
    assert batch.status == S.COMPLETED
    results = read_results(batch.results_file)
    assert [line["status"] for line in results] == [201, 201, 400, 424, 424, 201, 201, 201, 201, 201, 201]
    assert results[2]["error"]["subcode"] == "quota_violation"
    for line in results[3:5]:
        assert line["error"]["subcode"] == "ref_failed"
        assert line["error"]["description"].startswith("Line 3 (t3) failed")
    assert batch.summary["failed"] == 3
    assert not Identity.objects.filter(identity="RFID#X").exists()


def test_a_path_missing_from_the_result_is_424(caller):
    lines = [
        {"op": "create_twin", "ref": "t", "description": {}},
        {"op": "create_twin_identity", "twin": {"$ref": "t.no.such.path"}, "identities": {"RFID#Y": {}}},
    ]
    batch = run_batch(mixed_batch(caller, lines))
    second = read_results(batch.results_file)[1]
    assert second["status"] == 424
    assert second["error"]["description"] == (
        "Line 1 (t) has no no.such.path in its result; this line was not run."
    )


@pytest.mark.parametrize(
    "bad_line, subcode, description",
    [
        (
            {
                "op": "create_twin_identity",
                "twin": {"$ref": "t9.creation_certificate.uuid"},
                "identities": {"RFID#Z": {}},
            },
            "ref_unknown",
            "No line before this one has ref 't9' (line 4 has it, which is not earlier).",
        ),
        (
            {"op": "get_twin", "twin": {"$ref": "nobody.creation_certificate.uuid"}},
            "ref_unknown",
            "No line before this one has ref 'nobody'.",
        ),
        ({"op": "create_twin", "ref": "t1"}, "duplicate_ref", "The ref 't1' is already line 1's."),
        (
            {"op": "scan_twins"},
            "operation_not_batchable",
            "The operation 'scan_twins' cannot run in a batch.",
        ),
        ({"op": "fly"}, "operation_unknown", "The line's 'op' names no operation."),
        (
            {"op": "create_twin", "ref": "1x"},
            "invalid_ref",
            "The line's 'ref' must match ^[A-Za-z_][0-9A-Za-z_]{0,63}$.",
        ),
        ({"op": "get_twin", "twin": {"$ref": 5}}, "invalid_ref", "A $ref must be a string, not int."),
        # A reference stands for a value of the field's kind; the rest of the line is checked as is.
        (
            {
                "op": "create_twin_identity",
                "twin": {"$ref": "t1.creation_certificate.uuid"},
                "identities": {},
            },
            "invalid_input",
            None,
        ),
    ],
)
@pytest.mark.parametrize("validation", ["one pass", "in chunks"])
def test_validation_names_the_line_whose_reference_name_or_operation_is_wrong(
    caller, bad_line, subcode, description, validation, caplog
):
    """In chunks (two lines each), the merge finds the later or unknown name or the name
    defined twice across chunks and checks the file again in one pass: the same report."""
    chunked = (
        {"BATCH_VALIDATE_PARALLEL_MIN_LINES": 0, "BATCH_CHUNK_LINES": 2} if validation == "in chunks" else {}
    )
    lines = [
        {"op": "create_twin", "ref": "t1", "description": {}},
        {"op": "get_twin", "twin": {"$ref": "t1.creation_certificate.uuid"}},
        bad_line,
        {"op": "create_twin", "ref": "t9"},
    ]
    with override_settings(**chunked), caplog.at_level("INFO", logger="batches.pipeline.validating"):
        batch = run_batch(mixed_batch(caller, lines))
    if chunked:
        assert "checking the mixed file again in one pass" in caplog.text
    assert batch.status == S.VALIDATION_FAILED
    [report] = read_results(batch.results_file)[:1]
    assert report["line"] == 3
    assert report["error"]["subcode"] == subcode
    if description:
        assert report["error"]["description"] == description
    assert not Twin.objects.filter(account=caller.account).exists()
    assert not LineRef.objects.filter(batch_id=batch.pk).exists()


CHECKED_IN_CHUNKS = override_settings(BATCH_VALIDATE_PARALLEL_MIN_LINES=0, BATCH_CHUNK_LINES=10)


def chunk_layout(batch) -> list[tuple[int, int, list | None]]:
    """Each chunk's lines and the chunks that waited on it."""
    chunks_run = Chunk.objects.filter(batch_id=batch.pk).order_by("index")
    return list(chunks_run.values_list("first_line", "last_line", "unblocks"))


@CHECKED_IN_CHUNKS
def test_a_file_checked_in_chunks_runs_in_chunks_cut_where_no_reference_crosses(caller, caplog):
    """Checked in chunks of 10 lines (each cutting a device), run in chunks cut again by the
    merge so that each holds whole devices: none waits on another."""
    with caplog.at_level("INFO", logger="batches.pipeline.validating"):
        batch = run_batch(mixed_batch(caller, device_lines(20)))
    assert "validating 6 chunks in parallel" in caplog.text
    assert "again in one pass" not in caplog.text
    assert chunk_layout(batch) == [
        (1, 12, None),
        (13, 24, None),
        (25, 36, None),
        (37, 48, None),
        (49, 60, None),
    ]
    assert batch.status == S.COMPLETED, batch.failure_reason
    assert [line["status"] for line in read_results(batch.results_file)] == [201] * 60
    assert_devices_whole(caller, 20)
    assert not Chunk.objects.filter(batch_id=batch.pk, references__isnull=False).exists()


@CHECKED_IN_CHUNKS
def test_references_across_checked_chunks_are_resolved_by_the_merge(caller):
    """Every twin first, then every identity and entry: the later chunks' references name
    lines of the first chunks, which the merge looks up; those chunks wait on them."""
    devices = device_lines(10)
    batch = run_batch(mixed_batch(caller, devices[0::3] + devices[1::3] + devices[2::3]))
    # The identities grow the first chunk to twice its size (as in one pass); the entries wait.
    assert chunk_layout(batch) == [(1, 20, [1]), (21, 30, None)]
    assert batch.status == S.COMPLETED, batch.failure_reason
    assert {line["status"] for line in read_results(batch.results_file)} == {201}
    assert_devices_whole(caller, 10)


@CHECKED_IN_CHUNKS
def test_a_dry_run_checked_in_chunks_lists_every_line_and_runs_nothing(caller):
    batch = run_batch(mixed_batch(caller, device_lines(8), validate_only=True))
    assert batch.status == S.COMPLETED
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == list(range(1, 25))
    assert {line["error"]["subcode"] for line in results} == {"validate_only"}
    assert not Twin.objects.filter(account=caller.account).exists()
    assert not LineRef.objects.filter(batch_id=batch.pk).exists()


def test_references_stand_for_values_of_each_fields_kind(caller):
    lines = [
        {"op": "create_twin", "ref": "t", "description": {"valid_until": 4102444800, "owner_tag": "RFID#T1"}},
        {
            "op": "create_twin_identity",
            "twin": {"$ref": "t.creation_certificate.uuid"},
            "identities": {"RFID#T1": {"validity_ts": {"$ref": "t.description.valid_until"}}},
        },
        {"op": "resolve_twin_identity", "identity": {"$ref": "t.description.owner_tag"}},
        {"op": "get_twin", "twin": {"$ref": "t.creation_certificate.uuid"}, "show_terminated": True},
    ]
    batch = run_batch(mixed_batch(caller, lines))
    assert batch.status == S.COMPLETED, batch.failure_reason
    results = read_results(batch.results_file)
    assert [line["status"] for line in results] == [201, 201, 200, 200]
    assert results[1]["result"]["identities"]["RFID#T1"]["validity_ts"] == 4102444800
    assert results[2]["result"] == {"twins": [results[0]["result"]["creation_certificate"]["uuid"]]}


def test_an_operation_the_role_does_not_allow_fails_its_line_and_nothing_runs(make_caller):
    caller = make_caller(
        statement={"effect": "allow", "actions": ["create_batch", "create_twin", "create_twin_identity"]}
    )
    batch = run_batch(mixed_batch(caller, device_lines(2)))
    assert batch.status == S.VALIDATION_FAILED
    report = read_results(batch.results_file)
    assert [(line["line"], line["status"], line["error"]["subcode"]) for line in report] == [
        (3, 403, "action_not_allowed"),
        (6, 403, "action_not_allowed"),
    ]
    assert not Twin.objects.filter(account=caller.account).exists()


@override_settings(BATCH_CHUNK_LINES=10)
def test_a_chunk_referring_to_an_earlier_chunk_waits_until_that_chunk_committed(caller):
    """Every twin first, then every identity: the identities' chunks wait on the twins'."""
    devices = device_lines(30)
    lines = devices[0::3] + devices[1::3] + devices[2::3]
    batch = mixed_batch(caller, lines)
    runner = into_processing(batch)
    waiting = dict(Chunk.objects.filter(batch_id=batch.pk).values_list("index", "waits"))
    assert [waiting[index] for index in range(3)] == [0, 0, 0]
    assert all(waiting[index] > 0 for index in range(3, 9))
    assert chunks.chunk_claim_and_run(batch.pk)
    # The first twin chunk is done; the next claim takes the next twin chunk, not a waiting one.
    assert chunks.chunk_claim_and_run(batch.pk)
    done = set(Chunk.objects.filter(batch_id=batch.pk, done=True).values_list("index", flat=True))
    assert done == {0, 1}
    runner.drain()
    batch.refresh_from_db()
    assert batch.status == S.COMPLETED
    assert {line["status"] for line in read_results(batch.results_file)} == {201}
    assert_devices_whole(caller, 30)


@override_settings(BATCH_CHUNK_LINES=10)
def test_a_cancelled_mixed_batch_lists_unrun_lines_and_its_retry_runs_them_with_resolved_references(caller):
    """Cancelled after its first chunk of twins: the retry's identities and entries of those
    twins refer to lines it does not hold, and get their values from the first run's results."""
    devices = device_lines(12)
    batch = stop_after_first_chunk(mixed_batch(caller, devices[0::3] + devices[1::3] + devices[2::3]))
    assert batch.status == S.CANCELLED
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == list(range(1, 37))
    assert [line["status"] for line in results[:10]] == [201] * 10
    assert {line["error"]["subcode"] for line in results[10:]} == {"not_executed"}
    retry, _ = batch_retry(batch=batch, user=caller.user)
    retry = run_batch(retry)
    assert retry.status == S.COMPLETED, retry.failure_reason
    assert {line["status"] for line in read_results(retry.results_file)} == {201}
    assert_devices_whole(caller, 12)


def test_a_dry_run_of_a_mixed_batch_runs_nothing(caller):
    batch = run_batch(mixed_batch(caller, device_lines(3), validate_only=True))
    assert batch.status == S.COMPLETED
    assert {line["error"]["subcode"] for line in read_results(batch.results_file)} == {"validate_only"}
    assert not Twin.objects.filter(account=caller.account).exists()


@pytest.mark.parametrize("chunk_lines", [None, 2])
def test_results_carry_ids_and_echoed_fields(caller, chunk_lines):
    """Also when the file is checked in chunks of 2 lines: a device's lines are in two."""
    lines = [{**line, "key": f"k{n}"} for n, line in enumerate(device_lines(2))]
    chunked = (
        {"BATCH_VALIDATE_PARALLEL_MIN_LINES": 0, "BATCH_CHUNK_LINES": chunk_lines} if chunk_lines else {}
    )
    with override_settings(**chunked):
        batch = run_batch(mixed_batch(caller, lines, id_field="key", echo_fields=["op"]))
    assert batch.status == S.COMPLETED, batch.failure_reason
    results = read_results(batch.results_file)
    assert [(line["id"], line["input"]["op"]) for line in results] == [
        (f"k{n}", line["op"]) for n, line in enumerate(device_lines(2))
    ]
    assert json.dumps(results).count('"status": 201') == 6


def test_hostile_references_fail_their_line_alone(caller):
    """A thousand references to one large value, an index of thousands of digits and one of
    a non-ASCII digit: each fails its own line, and the chunk and the batch go on."""
    lines = [
        {"op": "create_twin", "ref": "big", "description": {"blob": "x" * 20_000, "list": [1, 2]}},
        {
            "op": "add_twin_ledger_entry",
            "twin": {"$ref": "big.creation_certificate.uuid"},
            "entries": {"e": {"value": [{"$ref": "big.description.blob"}] * 1000}},
        },
        {"op": "create_twin", "description": {"n": {"$ref": "big.description.list." + "9" * 5000}}},
        {"op": "create_twin", "description": {"n": {"$ref": "big.description.list.²"}}},
        {"op": "create_twin", "description": {"n": {"$ref": "big.description.list.1"}}},
    ]
    batch = run_batch(mixed_batch(caller, lines))
    assert batch.status == S.COMPLETED, batch.failure_reason
    results = read_results(batch.results_file)
    assert [(line["status"], line.get("error", {}).get("subcode")) for line in results] == [
        (201, None),
        (400, "line_too_large"),
        (424, "ref_failed"),
        (424, "ref_failed"),
        (201, None),
    ]
    assert results[4]["result"]["description"] == {"n": 2}


@pytest.mark.parametrize("key", ["op", "ref"])
def test_a_mixed_lines_own_key_cannot_be_the_id_field(caller, key):
    with pytest.raises(ValidationError) as refused:
        mixed_batch(caller, device_lines(1), id_field=key)
    assert refused.value.code == "invalid_id_field"


@pytest.mark.parametrize(
    ("line", "found"),
    [
        (5, []),
        ("text", []),
        (None, []),
        ([1, {"$ref": "t.a"}], ["t.a"]),
        ({"a": [{"$ref": "t.b"}, 2], "c": {"$ref": "u"}}, ["u", "t.b"]),
    ],
)
def test_references_are_found_in_any_json_value(line, found):
    """A retry reads lines that were never validated: any JSON value, not only objects."""
    assert [reference.text for reference in references_in(line)] == found

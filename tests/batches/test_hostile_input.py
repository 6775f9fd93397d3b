"""Hostile input through the API and the real pipeline: a client's bytes end as a 4xx or a
line's failure, never as a 500, a stuck batch or a worker out of memory."""

import gzip
import io
import json
import uuid

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batches import services
from batches.fileformat import FileUnreadable, parse_lines
from batches.models import Batch, BatchStatus
from batches.statuses import TERMINAL
from tests.support.assertions import assert_error
from tests.support.factories import BatchFactory, UploadFactory
from tests.support.inline_pipeline import read_results, run_batch
from twins.registry import operation_get

S = BatchStatus
SURROGATE = '"\\ud800"'
DEEP = "[" * 2000 + "]" * 2000


def post_raw(caller, path: str, body: str, method: str = "post"):
    return getattr(caller.client, method)(path, data=body.encode(), content_type="application/json")


def make_twin(caller) -> str:
    response = caller.client.post("/twins", {}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["creation_certificate"]["uuid"]


# The API ------------------------------------------------------------------------------


def hostile_routes(caller):
    twin = make_twin(caller)
    upload = UploadFactory(caller=caller, content=b'{"description": {}}\n')
    return [
        ("post", "/twins", '{"description": {"a": @}}'),
        ("patch", f"/twins/{twin}", '{"description": {"a": @}}'),
        ("post", f"/twins/{twin}/ledgers/personal", '{"entries": {"k": {"value": @}}}'),
        ("post", f"/twins/{twin}/identities", '{"identities": {"RFID#x": {"visibility": @}}}'),
        ("patch", f"/users/{caller.account_user.uuid}", '{"description": {"a": @}}'),
        (
            "post",
            "/batches",
            '{"handler": "' + str(upload.handler) + '", "operation": "create_twin", "batch_dict": {"a": @}}',
        ),
    ]


@pytest.mark.parametrize(
    "value",
    [SURROGATE, '"a\\udfffb"', '"\\u0000"', "NaN", "Infinity", "-Infinity", "1e400", "1" * 5000, DEEP],
    ids=["surrogate", "low-surrogate", "nul", "nan", "inf", "-inf", "huge-float", "huge-integer", "deep"],
)
def test_hostile_json_bodies_are_400_on_every_route(caller, value):
    for method, path, template in hostile_routes(caller):
        response = post_raw(caller, path, template.replace("@", value), method)
        assert_error(response, 400, "malformed_body")
    assert not Batch.objects.filter(account=caller.account).exists()


def test_valid_surrogate_pairs_and_moderate_nesting_still_work(caller):
    nested = "[" * 30 + "]" * 30
    response = post_raw(caller, "/twins", '{"description": {"a": "\\ud83d\\ude00", "b": ' + nested + "}}")
    assert response.status_code == 201, response.content
    assert response.json()["description"]["a"] == "\U0001f600"


@override_settings(BATCH_JSON_MAX_DEPTH=5)
def test_the_depth_limit_is_a_setting(caller):
    assert_error(post_raw(caller, "/twins", '{"description": {"a": [[[[[1]]]]]}}'), 400, "malformed_body")
    assert post_raw(caller, "/twins", '{"description": {"a": [[[1]]]}}').status_code == 201


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_body_over_the_memory_limit_is_413(caller):
    body = json.dumps({"description": {"a": "x" * 2000}})
    assert_error(post_raw(caller, "/twins", body), 413, "request_too_large")
    # The API reads JSON only: a form body is refused for its type, whatever its size.
    form = caller.client.post(
        "/twins", data="a=" + "x" * 2000, content_type="application/x-www-form-urlencoded"
    )
    assert_error(form, 415, "unsupported_media_type")


def test_a_body_of_the_default_limit_is_413_not_500(caller):
    body = json.dumps({"description": {"a": "x" * (3 * 1024 * 1024)}})
    assert_error(post_raw(caller, "/twins", body), 413, "request_too_large")


@pytest.mark.parametrize(
    "cursor",
    [
        "WyIyMDIwLTAxLTAxIiwgNV0=",  # ["2020-01-01", 5]
        "WyIyMDIwLTAxLTAxIiwgIjEyIl0=",  # ["2020-01-01", "12"]
        "eyJhIjogMSwgImIiOiAyfQ==",  # {"a": 1, "b": 2}
        "WzEsIDIsIDNd",  # [1, 2, 3]
        "!!!",
        "WyJ4Il0=",  # ["x"]
    ],
)
def test_bad_batch_cursors_are_400(caller, cursor):
    assert_error(caller.client.get("/batches", {"cursor": cursor}), 400, "invalid_cursor")


@pytest.mark.parametrize("cursor", ["WyIyMDIwLTAxLTAxIiwgNV0=", "!!!", "8J+YgA=="])
def test_bad_twin_cursors_are_400(caller, cursor):
    assert_error(caller.client.get("/twins", {"cursor": cursor}), 400)


# Batches through the real pipeline ------------------------------------------------------


def run(caller, content: bytes, content_type="application/x-ndjson", operation="create_twin") -> Batch:
    return run_batch(
        BatchFactory(caller=caller, operation=operation, content=content, content_type=content_type)
    )


def errors_of(batch) -> dict[int, dict]:
    return {line["line"]: line for line in read_results(batch.errors_file)}


def test_poison_lines_fail_validation_with_the_single_calls_verdict(caller):
    twin = make_twin(caller)
    lines = [
        '{"description": {"a": %s}}' % ("[" * 32000 + "]" * 32000),
        '{"description": {"a": NaN}}',
        '{"description": {"a": 1e400}}',
        '{"description": {"a": "\\ud800"}}',
        '{"description": {"ok": 1}}',
    ]
    batch = run(caller, ("\n".join(lines) + "\n").encode())
    assert batch.status == S.VALIDATION_FAILED
    errors = errors_of(batch)
    assert sorted(errors) == [1, 2, 3, 4]
    assert {line["status"] for line in errors.values()} == {400}
    assert {line["error"]["subcode"] for line in errors.values()} == {"malformed_body"}
    assert "64 levels" in errors[1]["error"]["description"]
    # The same bodies as single calls: the same status and subcode.
    for body in lines[1:4]:
        assert_error(post_raw(caller, f"/twins/{twin}", body, "patch"), 400, "malformed_body")


def test_a_ledger_value_with_a_lone_surrogate_is_the_lines_failure(caller):
    twin = make_twin(caller)
    line = '{"twin": "' + twin + '", "entries": {"k": {"value": "\\udc00"}}}\n'
    batch = run(caller, line.encode(), operation="add_twin_ledger_entry")
    assert batch.status == S.VALIDATION_FAILED
    assert errors_of(batch)[1]["error"]["subcode"] == "malformed_body"


def corrupt_gzip() -> bytes:
    content = bytearray(gzip.compress(b'{"description": {}}\n' * 1000 + b'{"d": "' + b"x" * 5000 + b'"}\n'))
    content[20:60] = bytes(byte ^ 0xFF for byte in content[20:60])
    return bytes(content)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (corrupt_gzip(), "could not be decompressed"),
        (gzip.compress(b'{"description": {}}\n' * 1000)[:-30], "could not be decompressed"),
        (b"\x00" * 100_000, "NUL byte"),
    ],
    ids=["corrupt-gzip", "truncated-gzip", "nul-bytes"],
)
def test_unreadable_files_fail_validation_and_can_be_deleted(caller, content, reason):
    batch = run(caller, content)
    assert batch.status == S.VALIDATION_FAILED
    assert reason in batch.failure_reason
    services.batch_delete(batch=batch)
    assert run_batch(batch) is None


@pytest.mark.parametrize(
    "content",
    [corrupt_gzip(), b'{"description": {"a": ' + b"[" * 32000 + b"]" * 32000 + b"}}\n", b"\x00" * 1000],
    ids=["corrupt-gzip", "deep", "nul-bytes"],
)
def test_a_broken_file_cancelled_or_deleted_before_validation_reaches_the_end(caller, content):
    cancelled = BatchFactory(caller=caller, content=content)
    services.batch_cancel(batch=cancelled)
    assert run_batch(cancelled).status == S.CANCELLED
    deleted = BatchFactory(caller=caller, content=content)
    services.batch_delete(batch=deleted)
    assert run_batch(deleted) is None


@override_settings(BATCH_MAX_LINES=1000)
def test_a_blank_line_flood_fails_at_the_line_limit(caller):
    batch = run(caller, gzip.compress(b'{"description": {}}\n' + b"\n" * 100_000))
    assert batch.status == S.VALIDATION_FAILED
    assert "more than 1000 lines" in batch.failure_reason and "blank lines" in batch.failure_reason


@override_settings(BATCH_DECOMPRESSED_MAX_BYTES=100_000)
def test_a_decompression_bomb_stops_at_the_decompressed_limit(caller):
    batch = run(caller, gzip.compress(b'{"description": {}}\n' + b" " * 1_000_000 + b"\n"))
    assert batch.status == S.VALIDATION_FAILED
    assert "more than 100000 bytes" in batch.failure_reason


@override_settings(BATCH_GZIP_MAX_MEMBERS=1000)
def test_a_flood_of_empty_gzip_members_fails_validation_naming_the_limit(caller):
    flood = gzip.compress(b'{"description": {}}\n') + gzip.compress(b"") * 50_000
    batch = run(caller, flood)
    assert batch.status == S.VALIDATION_FAILED
    assert "more than 1000 gzip members" in batch.failure_reason


def test_the_client_content_type_decides_the_format(caller):
    batch = run(caller, b'"abc"\n"def"\n', content_type="application/x-ndjson")
    assert batch.status == S.VALIDATION_FAILED
    assert Batch.objects.get(pk=batch.pk).succeeded == 0
    assert {line["error"]["subcode"] for line in errors_of(batch).values()} == {"invalid_json"}


def test_a_csv_without_a_header_fails_validation(caller):
    batch = run(caller, b"\n\n\n", content_type="text/csv")
    assert batch.status == S.VALIDATION_FAILED
    assert "no header" in batch.failure_reason


@override_settings(BATCH_LINE_MAX_BYTES=100)
def test_an_over_long_line_before_the_csv_header_is_reported_on_its_line(caller):
    batch = run(caller, b"x" * 500 + b'\ndescription\n"{}"\n', content_type="text/csv")
    assert batch.status == S.VALIDATION_FAILED
    assert {number: line["error"]["subcode"] for number, line in errors_of(batch).items()} == {
        1: "line_too_large"
    }


def test_the_csv_multi_line_record_bomb_is_one_bad_line(caller):
    bomb = b"description\n" + b'"xy\n",' * 50_000 + b"x\n" + b'"{}"\n'
    batch = run(caller, gzip.compress(bomb), content_type="text/csv")
    assert batch.status == S.VALIDATION_FAILED
    errors = errors_of(batch)
    assert list(errors) == [2] and errors[2]["error"]["subcode"] == "line_too_large"


def test_nan_in_a_csv_cell_is_400_malformed_body(caller):
    batch = run(caller, b'description\n"{""a"": NaN}"\n', content_type="text/csv")
    assert errors_of(batch)[2]["error"] == {
        "subcode": "malformed_body",
        "description": "The cell 'description': NaN is not a JSON number.",
    }


# Property: any hostile file ends terminal, with a reason per bad line -----------------

hostile_values = st.sampled_from(
    [
        "NaN",
        "-Infinity",
        "1e400",
        "1" * 5000,
        '"\\ud800"',
        '"\\udfff\\ud800"',
        '"\\ud83d\\ude00"',
        "[" * 100 + "]" * 100,
        "[" * 3000 + "]" * 3000,
        '"ok"',
        "{}",
        "null",
        "-0",
        "1e-400",
        '"\\u0000"',
    ]
)
hostile_lines = st.one_of(
    hostile_values.map(lambda value: ('{"description": {"a": ' + value + "}}").encode()),
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"\xef\xbb\xbf{}",
            b'{"description": {"a": "\xff\xfe"}}',
            b'{"description": {"a": "\xed\xa0\x80"}}',  # a surrogate in UTF-8 form
            b"{}\r",
            b"   ",
            b"",
            b'{"description": {"a": "' + b"x" * 3000 + b'"}}',
            b"[1, 2]",
            b'{"description": {"a": 1}',
            b'"xy',
            b'",',
            b"a,b,c," * 50,
            b'"{""a"": NaN}"',
            b"\x00",
        ]
    ),
)
line_endings = st.sampled_from([b"\n", b"\r\n"])


@st.composite
def hostile_files(draw):
    lines = draw(st.lists(hostile_lines, min_size=0, max_size=8))
    ending = draw(line_endings)
    content = draw(st.sampled_from([b"", b"description\n", b"a,b\n"])) + ending.join(lines)
    if draw(st.booleans()):
        content += b"\n" * draw(st.integers(0, 3000))
    packing = draw(st.sampled_from(["plain", "gzip", "truncated-gzip", "corrupt-gzip"]))
    if packing != "plain":
        content = gzip.compress(content)
        if packing == "truncated-gzip":
            content = content[: draw(st.integers(2, max(2, len(content) - 1)))]
        elif packing == "corrupt-gzip" and len(content) > 12:
            at = draw(st.integers(10, len(content) - 1))
            content = content[:at] + bytes([content[at] ^ 0x5A]) + content[at + 1 :]
    content_type = draw(st.sampled_from(["", "application/x-ndjson", "text/csv", "application/octet-stream"]))
    return content, content_type


LIMITS = {"max_line_bytes": 2048, "max_lines": 2000, "max_decompressed_bytes": 50_000, "max_csv_cells": 100}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_files(), st.sampled_from(["create_twin", "update_twin", "add_twin_ledger_entry"]))
def test_parse_lines_and_validate_input_are_total(file, name):
    content, content_type = file
    operation = operation_get(name)
    try:
        for parsed in parse_lines(io.BytesIO(content), content_type=content_type, **LIMITS):
            assert parsed.line >= 1
            if parsed.data is None:
                assert parsed.error_subcode and parsed.error
                continue
            try:
                operation.validate_input(parsed.data)
            except Exception as error:  # noqa: BLE001 - the assertion names what escaped
                from django.core.exceptions import ValidationError as DjangoValidationError
                from rest_framework.exceptions import ValidationError

                assert isinstance(error, ValidationError | DjangoValidationError), repr(error)
    except FileUnreadable as error:
        assert str(error)


@pytest.mark.django_db(transaction=False)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(file=hostile_files())
def test_any_hostile_file_ends_terminal_through_the_pipeline(caller, file):
    content, content_type = file
    with override_settings(
        BATCH_LINE_MAX_BYTES=2048, BATCH_MAX_LINES=2000, BATCH_DECOMPRESSED_MAX_BYTES=50_000
    ):
        batch = run(caller, content, content_type=content_type)
    assert batch.status in TERMINAL, batch.status
    if batch.status == S.VALIDATION_FAILED:
        assert batch.failure_reason
        for line in read_results(batch.errors_file):
            assert line["status"] == 400 and line["error"]["subcode"], line
    else:
        results = read_results(batch.results_file)
        assert all(line["status"] < 500 for line in results), results
    assert uuid.UUID(str(batch.pk))


def test_a_nul_character_in_json_text_is_400_not_a_database_error(caller):
    for body in ['{"description": {"a": "x\\u0000y"}}', '{"description": {"a\\u0000": 1}}']:
        assert_error(post_raw(caller, "/twins", body), 400, "malformed_body")
    batch = run(caller, b'{"description": {"a": "\\u0000"}}\n{"description": {"a": "\\\\u0000"}}\n')
    assert batch.status == S.VALIDATION_FAILED
    assert {number: line["error"]["subcode"] for number, line in errors_of(batch).items()} == {
        1: "malformed_body"
    }

"""Results as CSV (docs/contract.md, section 15): `?download=true&format=csv` serves the results, the
errors only and the lines run so far as CSV rows, one per result line, formula-safe, and the
same bytes on local storage and S3."""

import csv
import io
import json
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import override_settings
from django.urls import resolve

from batches.csv_results import results_csv
from batches.models import Batch, BatchStatus
from batches.pipeline import chunks
from tests.scaleout.conftest import moto_endpoint, s3  # noqa: F401 - the S3 fixtures
from tests.support.assertions import assert_error
from tests.support.batch_files import updates
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import into_processing, read_results, run_batch

S = BatchStatus
pytestmark = pytest.mark.django_db
LOCAL_STORAGE = settings.STORAGES["default"]
HEADER = ["line", "id", "status", "subcode", "description", "result"]


def converted(records: list[dict], echo_fields=()) -> list[list[str]]:
    text = b"".join(results_csv([b"".join(json.dumps(r).encode() + b"\n" for r in records)], echo_fields))
    return list(csv.reader(io.StringIO(text.decode(), newline="")))


def download_url(caller, batch, **params) -> str:
    answer = caller.client.get(f"/batches/{batch.pk}", {"download": "true", **params})
    assert answer.status_code == 200, answer.content
    return answer.json()["download"]["url"]


def fetched(caller, url: str):
    """A download URL followed as a client would; it must be this server's own endpoint."""
    assert urlsplit(url).netloc == "testserver", url
    response = caller.client.get(urlsplit(url).path)
    assert response.status_code == 200, response
    return response, b"".join(response.streaming_content)


def csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


def expected_rows(lines: list[dict]) -> list[list[str]]:
    """The rows the contract asks for result lines without id or input."""
    return [
        [
            str(line["line"]),
            "",
            "" if line["status"] is None else str(line["status"]),
            line.get("error", {}).get("subcode", ""),
            line.get("error", {}).get("description", ""),
            json.dumps(line["result"], separators=(",", ":")) if "result" in line else "",
        ]
        for line in lines
    ]


# The converter


def test_rows_hold_the_id_the_status_the_error_the_result_and_the_echoed_fields():
    rows = converted(
        [
            {"line": 1, "status": 201, "id": "A-1", "input": {"name": "Ann", "age": 7}, "result": {"k": "é"}},
            {
                "line": 2,
                "status": 404,
                "id": 17,
                "input": {"name": None},
                "error": {"subcode": "nf", "description": "No."},
            },
            {
                "line": 3,
                "status": None,
                "id": None,
                "input": {},
                "error": {"subcode": "not_executed", "description": "x"},
            },
        ],
        echo_fields=["name", "age"],
    )
    assert rows == [
        [*HEADER, "input.name", "input.age"],
        ["1", "A-1", "201", "", "", '{"k":"é"}', "Ann", "7"],
        ["2", "17", "404", "nf", "No.", "", "null", ""],
        ["3", "", "", "not_executed", "x", "", "", ""],
    ]


@pytest.mark.parametrize(
    "value, cell",
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
    ],
)
def test_a_cell_a_spreadsheet_would_run_is_prefixed(value, cell):
    [_, row] = converted(
        [
            {
                "line": 1,
                "status": 400,
                "id": value,
                "input": {"f": value},
                "error": {"subcode": "s", "description": value},
            }
        ],
        echo_fields=["f"],
    )
    assert (row[1], row[4], row[6]) == (cell, cell, cell)


def test_a_negative_number_is_prefixed():
    [_, row] = converted([{"line": 1, "status": 201, "id": -5, "input": {"n": -1.5}, "result": -3}], ["n"])
    assert (row[1], row[5], row[6]) == ("'-5", "'-3", "'-1.5")


def test_lines_cut_anywhere_give_the_same_csv():
    lines = b"".join(
        json.dumps({"line": n, "status": 201, "result": {"n": n, "text": 'a,b\n"c"'}}).encode() + b"\n"
        for n in range(1, 50)
    )
    whole = b"".join(results_csv([lines], []))
    byte_by_byte = b"".join(results_csv((lines[i : i + 1] for i in range(len(lines))), []))
    assert whole == byte_by_byte and len(csv_rows(whole)) == 50


def test_csv_streams_before_the_whole_input_is_read():
    read = []

    def lines():
        for n in range(1, 100_001):
            read.append(n)
            yield json.dumps({"line": n, "status": 201, "result": {"n": n}}).encode() + b"\n"

    converter = results_csv(lines(), [])
    next(converter)
    next(converter)
    assert 0 < len(read) < 10_000


# The endpoints, on a real batch


@override_settings(BATCH_CHUNK_LINES=4)
def test_the_results_and_errors_as_csv_hold_what_the_json_files_hold(caller):
    batch = run_batch(
        BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 10, bad_every=3))
    )
    assert batch.status == S.COMPLETED and batch.failed == 3

    response, body = fetched(caller, download_url(caller, batch, format="csv"))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{batch.uuid}-results.csv"'
    rows = csv_rows(body)
    assert rows[0] == HEADER
    assert rows[1:] == expected_rows(read_results(batch.results_file))

    response, body = fetched(caller, download_url(caller, batch, format="csv", part="errors"))
    assert response["Content-Disposition"] == f'attachment; filename="{batch.uuid}-errors.csv"'
    errors = read_results(batch.errors_file)
    assert [line["line"] for line in errors] == [3, 6, 9]
    assert csv_rows(body) == [HEADER, *expected_rows(errors)]


def test_the_echoed_fields_are_columns_in_the_batchs_order(caller):
    batch = run_batch(BatchFactory(caller=caller))
    Batch.objects.filter(pk=batch.pk).update(echo_fields=["b", "a"])
    _, body = fetched(caller, download_url(caller, batch, format="csv"))
    assert csv_rows(body)[0] == [*HEADER, "input.b", "input.a"]


def test_json_stays_the_default_and_another_format_is_refused(caller):
    batch = run_batch(BatchFactory(caller=caller))
    as_json = download_url(caller, batch, format="json")
    plain = download_url(caller, batch)
    for url in (as_json, plain):
        response, body = fetched(caller, url)
        assert response["Content-Type"] == "application/x-ndjson"
        with default_storage.open(batch.results_file, "rb") as stored:
            assert body == stored.read()
    answer = caller.client.get(f"/batches/{batch.pk}", {"format": "csv"})
    assert answer.status_code == 200 and answer["Content-Type"] == "application/json"
    refused = caller.client.get(f"/batches/{batch.pk}", {"download": "true", "format": "xlsx"})
    assert "json or csv" in assert_error(refused, 400, "invalid_download_format")["description"]


@override_settings(BATCH_CHUNK_LINES=4)
def test_the_lines_run_so_far_as_csv_are_those_of_the_json_partial_in_order(caller):
    batch = BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 20, bad_every=3))
    runner = into_processing(batch)
    for _ in range(3):
        assert chunks.chunk_claim_and_run(batch.pk)

    for part in ("results", "errors"):
        answer = caller.client.get(
            f"/batches/{batch.pk}", {"download": "true", "part": part, "format": "csv"}
        )
        assert answer.json()["download"]["partial"] is True
        response, body = fetched(caller, answer.json()["download"]["url"])
        assert response["Content-Disposition"] == f'attachment; filename="{batch.uuid}-{part}.partial.csv"'
        _, json_partial = fetched(caller, download_url(caller, batch, part=part))
        lines = [json.loads(line) for line in json_partial.decode().splitlines()]
        assert [line["line"] for line in lines] == (
            list(range(1, 13)) if part == "results" else [3, 6, 9, 12]
        )
        assert csv_rows(body) == [HEADER, *expected_rows(lines)]
    runner.drain()
    assert Batch.objects.get(pk=batch.pk).status == S.COMPLETED


def test_the_csv_is_the_same_bytes_on_s3_and_on_local_storage(caller, s3):  # noqa: F811 - imported above
    batch = run_batch(
        BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 9, bad_every=4))
    )
    assert batch.status == S.COMPLETED and batch.failed == 2
    assert urlsplit(download_url(caller, batch)).netloc == urlsplit(s3.endpoint).netloc, (
        "JSON stays presigned"
    )
    csv_url = download_url(caller, batch, format="csv")
    assert resolve(urlsplit(csv_url).path).url_name == "download_file"
    _, from_s3 = fetched(caller, csv_url)
    stored = s3.read(batch.results_file)

    with override_settings(STORAGES={**settings.STORAGES, "default": LOCAL_STORAGE}):
        default_storage.save(batch.results_file, ContentFile(stored))
        _, from_local = fetched(caller, download_url(caller, batch, format="csv"))
    assert from_s3 == from_local
    assert csv_rows(from_s3) == [HEADER, *expected_rows([json.loads(line) for line in stored.splitlines()])]


# The command-line client


@pytest.mark.django_db(transaction=True)
def test_the_cli_saves_the_results_as_csv(cli, caller, tmp_path):
    batch = run_batch(
        BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 5, bad_every=2))
    )
    target = tmp_path / "results.csv"
    saved = cli("download", str(batch.pk), "--csv", "-o", str(target))
    assert saved.returncode == 0, saved.stderr
    assert csv_rows(target.read_bytes()) == [HEADER, *expected_rows(read_results(batch.results_file))]
    errors = tmp_path / "errors.csv"
    assert cli("download", str(batch.pk), "--errors", "--csv", "-o", str(errors)).returncode == 0
    assert [row[0] for row in csv_rows(errors.read_bytes())] == ["line", "2", "4"]

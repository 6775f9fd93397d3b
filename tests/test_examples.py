"""examples/: a JSON Lines and a CSV file per batchable operation and for a mixed batch, each
run through a batch in the order a newcomer would (create, attach, read, change, remove), every
line a success; and each file's first line is the one-line example the form and `batch --help`
show."""

import io
import json
from pathlib import Path

import pytest
from django.conf import settings

from batches import cli
from batches.fileformat import parse_lines
from batches.models import BatchStatus
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import read_results, run_batch
from twins.examples import EXAMPLE_LINES, MIXED, MIXED_EXAMPLE_LINES, TWIN
from twins.registry import batchable_operations

EXAMPLES = Path(settings.BASE_DIR) / "examples"
# The order a newcomer runs them in: each needs what the ones before it made.
ORDER = [
    "create_twin",
    "create_twin_identity",
    "get_twin_identities",
    "resolve_twin_identity",
    "add_twin_ledger_entry",
    "get_twin_ledger_entry",
    "update_twin_ledger_entry",
    "update_twin",
    "get_twin",
    "delete_twin_ledger_entry",
    "delete_twin_identity",
    "terminate_twin",
]
FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


def test_every_batchable_operation_has_an_example_line_and_both_files():
    names = {operation.name for operation in batchable_operations()}
    assert set(EXAMPLE_LINES) == set(ORDER) == names
    assert sorted(path.name for path in EXAMPLES.glob("*.*") if path.suffix != ".md") == sorted(
        f"{name}.{suffix}" for name in [*names, MIXED] for suffix in FORMATS
    )


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("operation", ORDER)
def test_the_first_line_of_each_file_is_the_operations_example_line(operation, suffix):
    content = (EXAMPLES / f"{operation}.{suffix}").read_bytes()
    first = next(parse_lines(io.BytesIO(content), content_type=FORMATS[suffix], max_line_bytes=4096))
    assert first.data == EXAMPLE_LINES[operation]


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", FORMATS)
def test_every_example_file_runs_through_a_batch_with_every_line_a_success(caller, suffix):
    twin = caller.client.post("/twins", {}, format="json").json()["creation_certificate"]["uuid"]
    for operation in ORDER:
        content = (EXAMPLES / f"{operation}.{suffix}").read_bytes().replace(TWIN.encode(), twin.encode())
        batch = run_batch(
            BatchFactory(caller=caller, operation=operation, content=content, content_type=FORMATS[suffix])
        )
        assert batch.status == BatchStatus.COMPLETED, (operation, batch.failure_reason)
        results = read_results(batch.results_file)
        lines = len(list(parse_lines(io.BytesIO(content), content_type=FORMATS[suffix], max_line_bytes=4096)))
        assert len(results) == lines >= 1
        failed = [line for line in results if not 200 <= line["status"] < 300]
        assert not failed, f"{operation}.{suffix}: {json.dumps(failed)}"


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", FORMATS)
def test_the_mixed_example_runs_each_line_on_the_twins_its_earlier_lines_made(caller, suffix):
    content = (EXAMPLES / f"{MIXED}.{suffix}").read_bytes()
    lines = [
        parsed.data
        for parsed in parse_lines(io.BytesIO(content), content_type=FORMATS[suffix], max_line_bytes=4096)
    ]
    assert lines[: len(MIXED_EXAMPLE_LINES)] == MIXED_EXAMPLE_LINES
    batch = run_batch(
        BatchFactory(caller=caller, operation=MIXED, content=content, content_type=FORMATS[suffix])
    )
    assert batch.status == BatchStatus.COMPLETED, batch.failure_reason
    results = read_results(batch.results_file)
    assert [line["status"] for line in results] == [201] * 6 + [200] * 2, json.dumps(results)
    first_twin = results[0]["result"]["creation_certificate"]["uuid"]
    assert results[3]["result"]["description"]["twin_of"] == first_twin
    assert results[6]["result"] == {"twins": [first_twin]}
    assert results[7]["result"]["entries"]["temperature"]["value"] == 19.0


def test_batch_submit_help_shows_every_operations_example_line(capsys):
    with pytest.raises(SystemExit):
        cli.main(["submit", "--help"])
    shown = capsys.readouterr().out
    for name, line in EXAMPLE_LINES.items():
        assert f"{name}  " in shown and json.dumps(line) in shown
    for line in MIXED_EXAMPLE_LINES:
        assert json.dumps(line) in shown

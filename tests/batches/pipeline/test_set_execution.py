"""A batch run through the operations' set executors (PostgreSQL) writes results files byte
for byte those of the bulk path, and leaves the same rows, on generated files whose lines
fail as well as succeed (a missing, foreign or terminated twin, another account's ledger, a
key taken before the batch or by an earlier line)."""

import itertools
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batches.models import Batch
from batches.pipeline import chunks
from batches.pipeline.chunks import run_requests, run_set
from batchsite import fastjson
from tests.support.batch_api import create_batch, uploaded_handler
from tests.support.batch_files import jsonl
from tests.support.inline_pipeline import run_batch
from tests.twins import test_bulk
from tests.twins.test_bulk import ALIVE, FOREIGN, MISSING, TERMINATED, furnish
from twins import services
from twins.models import LedgerEntry, Twin
from twins.registry import operation_get

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the set path is PostgreSQL's"),
]

NOW = datetime(2026, 12, 7, 12, 30, 15, 123456, tzinfo=UTC)
# Text that COPY's text format and JSON both escape, and text beyond ASCII.
awkward_text = st.text(alphabet='ab\\"\t\n\r\x7fé€😀 ', max_size=6)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e-05, 1e-07, 0.00001, 100000.0])
    | awkward_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(awkward_text, inner, max_size=3),
    max_leaves=6,
)
description_keys = st.sampled_from(["a", "b", "name_1"])
twins = st.sampled_from([str(twin) for twin in [ALIVE[0], ALIVE[0], *ALIVE, TERMINATED, FOREIGN, MISSING]])
entry_keys = st.sampled_from(["a", "b", "c"])


def line_strategies(account, stranger_account) -> dict:
    ledgers = st.sampled_from(["personal", "personal", str(account.uuid), str(stranger_account.uuid)])
    visibility = st.none() | awkward_text
    return {
        "create_twin": st.fixed_dictionaries(
            {},
            optional={
                "description": st.none() | st.dictionaries(description_keys, json_values),
                "ignored": json_values,
            },
        ),
        "add_twin_ledger_entry": st.fixed_dictionaries(
            {
                "twin": twins,
                "ledger": ledgers,
                "entries": st.dictionaries(
                    entry_keys,
                    st.fixed_dictionaries({"value": json_values}, optional={"visibility": visibility}),
                    min_size=1,
                    max_size=3,
                ),
            }
        ),
    }


def numbered_uuids():
    """services.uuids_v4 giving the same uuids, in order, on each run."""
    numbers = itertools.count(1000)
    return lambda count: [uuid.UUID(int=next(numbers)) for _ in range(count)]


def rows() -> dict:
    return {
        "twins": sorted(
            Twin.objects.values_list(
                "uuid", "account_id", "status", "description", "created_at", "updated_at"
            )
        ),
        "entries": sorted(
            (twin, key, repr(value), *rest)
            for twin, key, value, *rest in LedgerEntry.objects.values_list(
                "twin_id", "key", "value", "visibility", "created_at", "updated_at", "value_changed_at"
            )
        ),
    }


def run(caller, stranger, monkeypatch, operation: str, lines: list[dict], *, set_path: bool):
    """The batch's status, results file and rows, from the same starting rows each time, and
    how many line groups ran on the set path and on the bulk path."""
    groups = {"set": 0, "bulk": 0}

    def counted(path: str, function):
        def run_group(*args):
            groups[path] += 1
            return function(*args)

        return run_group

    monkeypatch.setattr(chunks, "run_set", counted("set", run_set))
    monkeypatch.setattr(chunks, "run_requests", counted("bulk", run_requests))
    monkeypatch.setattr(services, "uuids_v4", numbered_uuids())
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=lambda: NOW))
    monkeypatch.setattr(test_bulk, "timezone", SimpleNamespace(now=lambda: NOW))
    with transaction.atomic(), override_settings(BATCH_SET_EXECUTION=set_path):
        furnish(caller.account, stranger.account)
        response = create_batch(caller, uploaded_handler(caller, jsonl(lines)), operation)
        assert response.status_code == 201, response.content
        batch = run_batch(Batch.objects.get(pk=response.json()["batch"]))
        with default_storage.open(batch.results_file, "rb") as results:
            written = results.read()
        state = rows()
        transaction.set_rollback(True)
    return (batch.status, written, state), groups


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draw=st.data())
def test_the_set_path_writes_the_bulk_paths_results_byte_for_byte(caller, stranger, monkeypatch, draw):
    strategies = line_strategies(caller.account, stranger.account)
    operation = draw.draw(st.sampled_from(sorted(strategies)))
    lines = draw.draw(st.lists(strategies[operation], min_size=1, max_size=12))
    bulk, bulk_groups = run(caller, stranger, monkeypatch, operation, lines, set_path=False)
    set_based, set_groups = run(caller, stranger, monkeypatch, operation, lines, set_path=True)
    assert set_based == bulk
    assert bulk[0] == "completed"
    # The set path decided every line: none fell back to the bulk path.
    assert (bulk_groups, set_groups) == ({"set": 0, "bulk": 1}, {"set": 1, "bulk": 0})


def test_both_operations_run_through_a_set_executor():
    assert operation_get("create_twin").set_executor is not None
    assert operation_get("add_twin_ledger_entry").set_executor is not None


def test_a_line_validated_once_validates_to_itself():
    """The prepared file keeps a line as validated; where the set path does not decide a line,
    the bulk path validates it again and must get the same input."""
    operation = operation_get("add_twin_ledger_entry")
    line = {"twin": str(ALIVE[0]), "ledger": "personal", "entries": {"a": {"value": [1, "é"]}}, "x": 1}
    validated = operation.validate_input(line)
    assert validated == {
        "twin": ALIVE[0],
        "ledger": "personal",
        "entries": {"a": {"value": [1, "é"], "visibility": None}},
    }
    assert operation.validate_input(fastjson.loads(fastjson.dumps(validated))) == validated

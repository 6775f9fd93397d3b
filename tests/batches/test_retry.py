"""POST /batches/{batch}/retry: a new batch of the lines that failed or never ran."""

import json
import uuid

import pytest
from django.core.files.storage import default_storage
from django.test import override_settings

from batches import services
from batches.models import Batch, BatchStatus
from tests.batches.pipeline_helpers import batch_start, jsonl, read_results, run_batch, stop_after_first_chunk
from tests.helpers import assert_error

S = BatchStatus


def input_of(batch) -> list[dict]:
    upload = Batch.objects.get(pk=batch.pk).upload
    name = batch.input_file or upload.file_name
    with default_storage.open(name, "rb") as content:
        return [json.loads(line) for line in content.read().decode().splitlines() if line.strip()]


def retry(caller, batch):
    return caller.client.post(f"/batches/{batch.pk}/retry")


def test_retry_takes_only_the_failed_lines_in_order(caller):
    twins = [
        line["result"]["creation_certificate"]["uuid"]
        for line in read_results(run_batch(batch_start(caller, "create_twin", jsonl([{}, {}]))).results_file)
    ]
    lines = [
        {"twin": twins[0], "description": {"a": 1}},
        {"twin": str(uuid.uuid4()), "description": {"a": 2}},
        {"twin": twins[1], "description": {"a": 3}},
        {"twin": str(uuid.uuid4()), "description": {"a": 4}},
    ]
    original = run_batch(batch_start(caller, "update_twin", jsonl(lines)))
    response = retry(caller, original)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["retry_of"] == str(original.pk)
    assert body["status"] == "new"
    assert body["operation"] == "update_twin"
    retried = Batch.objects.get(pk=body["batch"])
    assert input_of(retried) == [lines[1], lines[3]]
    finished = run_batch(retried)
    assert [line["status"] for line in read_results(finished.results_file)] == [404, 404]


@override_settings(BATCH_CHUNK_LINES=2)
def test_retry_of_a_cancelled_batch_takes_the_lines_that_never_ran(caller):
    records = [{"description": {"serial": n}} for n in range(5)]
    batch = stop_after_first_chunk(batch_start(caller, "create_twin", jsonl(records)))
    response = retry(caller, batch)
    assert response.status_code == 201, response.content
    assert input_of(Batch.objects.get(pk=response.json()["batch"])) == records[2:]


def test_retry_of_a_batch_cancelled_before_validation_reads_its_input(caller):
    records = [{"description": {"serial": n}} for n in range(3)]
    batch = batch_start(caller, "create_twin", jsonl(records))
    services.batch_cancel(batch=batch)
    run_batch(batch)
    response = retry(caller, batch)
    assert response.status_code == 201, response.content
    assert input_of(Batch.objects.get(pk=response.json()["batch"])) == records


def test_nothing_to_retry_is_409(caller):
    batch = run_batch(batch_start(caller, "create_twin", jsonl([{}])))
    assert_error(retry(caller, batch), 409, "nothing_to_retry")


@pytest.mark.parametrize("finish", ["hash_mismatch", "validation_failed", "running"])
def test_only_completed_or_cancelled_batches_can_be_retried(caller, finish):
    if finish == "hash_mismatch":
        batch = run_batch(batch_start(caller, "create_twin", jsonl([{}]), hash="0" * 64))
    elif finish == "validation_failed":
        batch = run_batch(batch_start(caller, "create_twin", b"{broken\n"))
    else:
        batch = batch_start(caller, "create_twin", jsonl([{}]))
    assert_error(retry(caller, batch), 409, "batch_not_retryable")


def test_another_accounts_batch_is_404(caller, stranger):
    batch = run_batch(
        batch_start(stranger, "update_twin", jsonl([{"twin": str(uuid.uuid4()), "description": {}}]))
    )
    assert_error(retry(caller, batch), 404)


def test_retry_needs_the_operation_in_the_role(caller, make_caller):
    batch = run_batch(
        batch_start(caller, "update_twin", jsonl([{"twin": str(uuid.uuid4()), "description": {}}]))
    )
    limited = make_caller(account=caller.account, statement={"effect": "deny", "actions": ["update_twin"]})
    assert_error(retry(limited, batch), 403, "action_not_allowed")
    assert Batch.objects.filter(retry_of=batch).count() == 0

"""POST /batches/{batch}/retry: a new batch of the lines that failed or never ran."""

import gzip
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from batches import services
from batches.models import Batch, BatchStatus, Upload
from tests.support.assertions import assert_error
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory, UploadFactory
from tests.support.inline_pipeline import InlinePipeline, read_results, run_batch, stop_after_first_chunk

S = BatchStatus


def input_of(retry) -> list[dict]:
    """The retry's input, once its first step (a worker's, run here) has built it."""
    runner = InlinePipeline()
    runner.advance(retry)
    while not Batch.objects.get(pk=retry.pk).input_file:
        assert runner.step(), "the retry's first step wrote no input"
    with default_storage.open(Batch.objects.get(pk=retry.pk).input_file, "rb") as content:
        return [json.loads(line) for line in content.read().decode().splitlines() if line.strip()]


def retry(caller, batch):
    return caller.client.post(f"/batches/{batch.pk}/retry")


def test_retry_takes_only_the_failed_lines_in_order(caller):
    twins = [
        line["result"]["creation_certificate"]["uuid"]
        for line in read_results(run_batch(BatchFactory(caller=caller, content=jsonl([{}, {}]))).results_file)
    ]
    lines = [
        {"twin": twins[0], "description": {"a": 1}},
        {"twin": str(uuid.uuid4()), "description": {"a": 2}},
        {"twin": twins[1], "description": {"a": 3}},
        {"twin": str(uuid.uuid4()), "description": {"a": 4}},
    ]
    original = run_batch(BatchFactory(caller=caller, operation="update_twin", content=jsonl(lines)))
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
    batch = stop_after_first_chunk(BatchFactory(caller=caller, content=jsonl(records)))
    response = retry(caller, batch)
    assert response.status_code == 201, response.content
    assert input_of(Batch.objects.get(pk=response.json()["batch"])) == records[2:]


def test_retry_of_a_batch_cancelled_before_validation_reads_its_input(caller):
    records = [{"description": {"serial": n}} for n in range(3)]
    batch = BatchFactory(caller=caller, content=jsonl(records))
    services.batch_cancel(batch=batch)
    run_batch(batch)
    response = retry(caller, batch)
    assert response.status_code == 201, response.content
    assert input_of(Batch.objects.get(pk=response.json()["batch"])) == records


def test_nothing_to_retry_is_409(caller):
    batch = run_batch(BatchFactory(caller=caller, content=jsonl([{}])))
    assert_error(retry(caller, batch), 409, "nothing_to_retry")


@pytest.mark.parametrize("finish", ["hash_mismatch", "validation_failed", "running"])
def test_only_completed_or_cancelled_batches_can_be_retried(caller, finish):
    if finish == "hash_mismatch":
        batch = run_batch(BatchFactory(caller=caller, content=jsonl([{}]), hash="0" * 64))
    elif finish == "validation_failed":
        batch = run_batch(BatchFactory(caller=caller, content=b"{broken\n"))
    else:
        batch = BatchFactory(caller=caller, content=jsonl([{}]))
    assert_error(retry(caller, batch), 409, "batch_not_retryable")


def test_another_accounts_batch_is_404(caller, stranger):
    batch = run_batch(
        BatchFactory(
            caller=stranger,
            operation="update_twin",
            content=jsonl([{"twin": str(uuid.uuid4()), "description": {}}]),
        )
    )
    assert_error(retry(caller, batch), 404)


def test_retry_needs_the_operation_in_the_role(caller, make_caller):
    batch = run_batch(
        BatchFactory(
            caller=caller,
            operation="update_twin",
            content=jsonl([{"twin": str(uuid.uuid4()), "description": {}}]),
        )
    )
    limited = make_caller(account=caller.account, statement={"effect": "deny", "actions": ["update_twin"]})
    assert_error(retry(limited, batch), 403, "action_not_allowed")
    assert Batch.objects.filter(retry_of=batch).count() == 0


def cancelled_with_unrun_lines(caller):
    records = [{"description": {"serial": n}} for n in range(4)]
    with override_settings(BATCH_CHUNK_LINES=2):
        return stop_after_first_chunk(BatchFactory(caller=caller, content=jsonl(records)))


def stored_uploads(caller) -> int:
    return Upload.objects.filter(account=caller.account).exclude(file_name="").count()


def test_a_batch_has_one_retry_and_a_second_request_is_409_naming_it(caller):
    batch = cancelled_with_unrun_lines(caller)
    first = retry(caller, batch)
    assert first.status_code == 201, first.content
    uploads = stored_uploads(caller)
    body = assert_error(retry(caller, batch), 409, "batch_already_retried")
    assert first.json()["batch"] in body["description"]
    assert Batch.objects.filter(retry_of=batch).count() == 1
    assert stored_uploads(caller) == uploads


def test_the_retry_of_a_retry_takes_what_is_left(caller):
    batch = cancelled_with_unrun_lines(caller)
    second = Batch.objects.get(pk=retry(caller, batch).json()["batch"])
    services.batch_cancel(batch=second)
    run_batch(second)
    third = retry(caller, second)
    assert third.status_code == 201, third.content
    assert third.json()["retry_of"] == str(second.pk)


def test_the_same_idempotency_key_replays_the_retry(caller):
    batch = cancelled_with_unrun_lines(caller)
    headers = {"HTTP_IDEMPOTENCY_KEY": "retry-1"}
    first = caller.client.post(f"/batches/{batch.pk}/retry", **headers)
    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first
    uploads = stored_uploads(caller)
    again = caller.client.post(f"/batches/{batch.pk}/retry", **headers)
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json()["batch"] == first.json()["batch"]
    assert Batch.objects.filter(retry_of=batch).count() == 1
    assert stored_uploads(caller) == uploads


def test_a_key_used_for_another_request_is_409(caller):
    batch = cancelled_with_unrun_lines(caller)
    upload = UploadFactory(caller=caller, content=jsonl([{}]))
    created = caller.client.post(
        "/batches",
        {"handler": str(upload.handler), "operation": "create_twin"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="shared",
    )
    assert created.status_code == 201, created.content
    response = caller.client.post(f"/batches/{batch.pk}/retry", HTTP_IDEMPOTENCY_KEY="shared")
    assert_error(response, 409, "idempotency_key_reused")
    assert not Batch.objects.filter(retry_of=batch).exists()


def test_a_refused_retry_stores_nothing(caller, make_caller):
    batch = cancelled_with_unrun_lines(caller)
    limited = make_caller(account=caller.account, statement={"effect": "deny", "actions": ["create_twin"]})
    uploads = Upload.objects.count()
    files = stored_files()
    assert_error(retry(limited, batch), 403, "action_not_allowed")
    assert Upload.objects.count() == uploads
    assert stored_files() == files


def stored_files(folder: str = "") -> set[str]:
    """Every file in storage (local or a bucket)."""
    folders, names = default_storage.listdir(folder)
    found = {f"{folder}/{name}" if folder else name for name in names}
    for name in folders:
        found |= stored_files(f"{folder}/{name}" if folder else name)
    return found


def parallel_retries(caller, batch, *, count: int, key: str = "") -> list:
    """`count` retry requests at once, each on its own connection."""
    start = threading.Barrier(count)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}

    def one(_):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=caller.secret)
        try:
            start.wait(timeout=10)
            return client.post(f"/batches/{batch.pk}/retry", **headers)
        finally:
            connection.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


postgres_only = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="parallel writers need PostgreSQL",
)


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("key", ["", "one-key"], ids=["no-key", "same-key"])
def test_parallel_retries_make_one_batch(caller, key):
    batch = cancelled_with_unrun_lines(caller)
    files = stored_files()
    responses = parallel_retries(caller, batch, count=4, key=key)
    retries = list(Batch.objects.filter(retry_of=batch))
    assert len(retries) == 1
    made = [response for response in responses if response.status_code == 201]
    refused = [response for response in responses if response.status_code != 201]
    assert {response.json()["batch"] for response in made} == {str(retries[0].pk)}
    if key:
        assert not refused, [response.content for response in refused]
        assert sum(1 for response in made if "Idempotent-Replayed" not in response) == 1
    else:
        assert len(made) == 1
        for response in refused:
            assert str(retries[0].pk) in assert_error(response, 409, "batch_already_retried")["description"]
    # No request stored a file, the losers' included: the retry's first step writes its input.
    assert stored_files() == files


def test_retry_of_a_broken_file_cancelled_before_validation_takes_the_lines_before_the_break(caller):
    good = b'{"description": {"serial": 1}}\n' * 3
    content = gzip.compress(good + b'{"description": {}}\n' * 5000)[:-40]
    batch = BatchFactory(caller=caller, content=content, content_type="")
    services.batch_cancel(batch=batch)
    cancelled = run_batch(batch)
    assert cancelled.status == S.CANCELLED
    listed = len(read_results(cancelled.errors_file))
    assert 3 <= listed < 5003
    response = retry(caller, batch)
    assert response.status_code == 201, response.content
    retried = input_of(Batch.objects.get(pk=response.json()["batch"]))
    assert len(retried) == listed
    assert retried[:4] == [{"description": {"serial": 1}}] * 3 + [{"description": {}}]


def dry_run_of(caller, count: int):
    """A finished dry run of `count` lines: every line is listed in its errors part."""
    content = jsonl({"description": {"serial": n}} for n in range(count))
    return run_batch(BatchFactory(caller=caller, content=content, validate_only=True))


@override_settings(BATCH_VALIDATE_PARALLEL_MIN_LINES=10**9)
def test_the_request_reads_no_line_and_stores_nothing_the_first_step_builds_the_input(caller):
    dry_run = dry_run_of(caller, 30_000)
    assert dry_run.status == S.COMPLETED and default_storage.size(dry_run.errors_file) > 3_000_000
    files = stored_files()
    with mock.patch.object(default_storage, "open", wraps=default_storage.open) as opened:
        response = retry(caller, dry_run)
    assert response.status_code == 201, response.content
    assert opened.call_count == 0
    assert stored_files() == files
    retried = Batch.objects.get(pk=response.json()["batch"])
    assert retried.status == S.NEW and not retried.input_file
    built = input_of(retried)
    assert len(built) == 30_000 and built[-1] == {"description": {"serial": 29_999}}


def test_a_first_step_that_dies_half_way_leaves_nothing_and_runs_again(caller):
    batch = cancelled_with_unrun_lines(caller)
    retried = Batch.objects.get(pk=retry(caller, batch).json()["batch"])
    files = stored_files()
    runner = InlinePipeline()
    runner.advance(retried)
    failing_save = mock.patch(
        "batches.pipeline.retrying.storage_save_spooled", side_effect=OSError("disk full")
    )
    with failing_save, pytest.raises(OSError):
        runner.drain()
    assert stored_files() == files
    assert Batch.objects.get(pk=retried.pk).input_file == ""
    assert input_of(retried) == [{"description": {"serial": n}} for n in (2, 3)]


@pytest.mark.parametrize("gone", ["files", "batch"])
def test_a_retry_whose_original_went_before_its_first_step_fails_saying_so(caller, gone):
    batch = cancelled_with_unrun_lines(caller)
    retried = Batch.objects.get(pk=retry(caller, batch).json()["batch"])
    if gone == "files":
        default_storage.delete(batch.errors_file)
    else:
        services.batch_delete(batch=batch)
        assert run_batch(batch) is None
    failed = run_batch(retried)
    assert failed.status == S.VALIDATION_FAILED
    assert "retries" in failed.failure_reason and not failed.input_file
    body = caller.client.get(f"/batches/{retried.pk}").json()
    assert body["status"] == "validation_failed" and body["reason"] == failed.failure_reason


def test_a_retry_cancelled_before_its_first_step_lists_its_lines_for_the_next_retry(caller):
    batch = cancelled_with_unrun_lines(caller)
    second = Batch.objects.get(pk=retry(caller, batch).json()["batch"])
    services.batch_cancel(batch=second)
    cancelled = run_batch(second)
    assert cancelled.status == S.CANCELLED
    assert [line["line"] for line in read_results(cancelled.errors_file)] == [1, 2]
    third = Batch.objects.get(pk=retry(caller, second).json()["batch"])
    assert input_of(third) == [{"description": {"serial": n}} for n in (2, 3)]


# The retry's own time and order (docs/contract.md, section 14)


@override_settings(BATCH_CHUNK_LINES=2)
def test_a_retry_carries_the_deadline_and_priority_it_is_given_and_none_of_the_batchs_schedule(caller):
    records = [{"description": {"serial": n}} for n in range(5)]
    batch = stop_after_first_chunk(BatchFactory(caller=caller, content=jsonl(records)))
    Batch.objects.filter(pk=batch.pk).update(priority=8, not_before="2020-01-01T00:00:00Z")
    response = caller.client.post(f"/batches/{batch.pk}/retry", {"complete_within": 600}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["priority"] == 8
    assert "not_before" not in body
    assert 590 < body["deadline_ts"] - body["created_ts"] <= 600.5
    unfinished_retry = caller.client.post(f"/batches/{body['batch']}/retry", {"priority": 2}, format="json")
    assert_error(unfinished_retry, 409, "batch_not_retryable")


@override_settings(BATCH_CHUNK_LINES=2)
def test_a_retry_replays_its_key_with_the_same_schedule_and_refuses_another(caller):
    batch = stop_after_first_chunk(
        BatchFactory(caller=caller, content=jsonl([{"description": {"serial": n}} for n in range(5)]))
    )
    headers = {"HTTP_IDEMPOTENCY_KEY": "retry-with-a-deadline"}
    first = caller.client.post(f"/batches/{batch.pk}/retry", {"priority": 9}, format="json", **headers)
    again = caller.client.post(f"/batches/{batch.pk}/retry", {"priority": 9}, format="json", **headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true" and again.json()["batch"] == first.json()["batch"]
    other = caller.client.post(f"/batches/{batch.pk}/retry", {"priority": 3}, format="json", **headers)
    assert_error(other, 409, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("body", "subcode"),
    [
        ({"priority": 0}, "invalid_priority"),
        ({"priority": "high"}, "invalid_priority"),
        ({"complete_within": -1}, "invalid_deadline"),
        ({"deadline_ts": 1, "complete_within": 5}, "invalid_deadline"),
        ({"not_before": "soon"}, "invalid_not_before"),
    ],
)
def test_a_bad_retry_schedule_is_400_and_makes_no_retry(caller, body, subcode):
    batch = run_batch(BatchFactory(caller=caller, operation="update_twin", content=jsonl([{"twin": "x"}])))
    assert_error(caller.client.post(f"/batches/{batch.pk}/retry", body, format="json"), 400, subcode)
    assert not Batch.objects.filter(retry_of=batch).exists()

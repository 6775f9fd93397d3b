"""Batch controls (docs/contract.md, section 11) in this process, step by step: the error budget, dry runs
and results while running, through the API a client uses."""

import json

import pytest
import requests
from django.test import Client, override_settings
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from trustedtwin.tt_api import TTRESTService

from batches import services
from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline import chunks, driver
from tests.support.assertions import assert_error
from tests.support.batch_api import create_batch, uploaded_handler
from tests.support.batch_files import jsonl, updates
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import (
    first_chunk_run,
    history,
    into_processing,
    read_results,
    run_batch,
)
from twins.models import Twin

S = BatchStatus


def api_batch(caller, batch) -> dict:
    return caller.client.get(f"/batches/{batch.pk}").json()


# Creating


@pytest.mark.parametrize(
    "budget",
    [
        [],
        "5",
        {},
        {"max_failed": -1},
        {"max_failed": 1.5},
        {"max_failed": True},
        {"max_failed_ratio": 0},
        {"max_failed_ratio": 1.01},
        {"max_failed_ratio": "0.1"},
        {"max_failed_ratio": 0.1, "min_lines": 0},
        {"max_failed_ratio": 0.1, "min_lines": 2.5},
        {"min_lines": 10},
        {"max_failed": 1, "min_lines": 10},
        {"max_failed": 1, "stop": True},
    ],
)
def test_a_bad_error_budget_is_refused(caller, budget):
    response = create_batch(caller, uploaded_handler(caller), error_budget=budget)
    assert_error(response, 400, "invalid_error_budget")
    assert not Batch.objects.exists()


def test_controls_are_shown_back_only_when_given(caller):
    plain = create_batch(caller, uploaded_handler(caller)).json()
    assert "error_budget" not in plain and "validate_only" not in plain

    ratio = create_batch(caller, uploaded_handler(caller), error_budget={"max_failed_ratio": 0.05}).json()
    assert ratio["error_budget"] == {"max_failed_ratio": 0.05, "min_lines": 100}
    both = {"max_failed": 0, "max_failed_ratio": 1, "min_lines": 7}
    created = create_batch(caller, uploaded_handler(caller), error_budget=both, validate_only=True).json()
    assert created["error_budget"] == both and created["validate_only"] is True
    assert caller.client.get(f"/batches/{created['batch']}").json()["error_budget"] == both


def test_the_same_idempotency_key_with_other_controls_is_a_conflict(caller):
    handler = uploaded_handler(caller)
    key = {"Idempotency-Key": "controls-1"}
    first = create_batch(caller, handler, headers=key, error_budget={"max_failed": 1})
    assert first.status_code == 201
    again = create_batch(caller, handler, headers=key, error_budget={"max_failed": 1})
    assert again.json()["batch"] == first.json()["batch"]
    assert_error(
        create_batch(caller, handler, headers=key, validate_only=True), 409, "idempotency_key_reused"
    )


# The error budget


@override_settings(BATCH_CHUNK_LINES=10, BATCH_CANCEL_CHECK_LINES=1)
def test_max_failed_zero_stops_at_the_first_failure(caller):
    batch = BatchFactory(
        caller=caller,
        operation="update_twin",
        content=updates(caller, 60, first_bad=23),
        error_budget={"max_failed": 0},
    )
    batch = run_batch(batch)

    assert batch.status == S.CANCELLED
    assert history(batch)[-3:] == [S.CANCEL, S.CANCELLING, S.CANCELLED]
    assert (batch.processed, batch.failed) == (23, 1)
    body = api_batch(caller, batch)
    assert body["reason"].startswith("error_budget_exceeded")
    assert "1 of 23 lines failed" in body["reason"]
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == list(range(1, 61))
    assert results[22]["status"] == 404
    assert all(line["status"] == 200 for line in results[:22])
    assert all(line["error"]["subcode"] == "not_executed" for line in results[23:])
    assert Twin.objects.filter(description__n=24).count() == 0


@override_settings(BATCH_CHUNK_LINES=50)
def test_a_failure_ratio_stops_within_one_chunk_and_the_batch_can_be_retried(caller):
    budget = {"max_failed_ratio": 0.05, "min_lines": 100}
    batch = BatchFactory(
        caller=caller,
        operation="update_twin",
        content=updates(caller, 1000, bad_every=5),
        error_budget=budget,
    )
    batch = run_batch(batch)

    assert batch.status == S.CANCELLED
    assert batch.failure_reason.startswith("error_budget_exceeded: 20 of 100 lines failed (20.0%)")
    # Judged from line 100 on, when it is already passed: nothing past that chunk ran.
    assert batch.processed == 100
    results = read_results(batch.results_file)
    assert len(results) == 1000
    assert sum(line["status"] is None for line in results) == 900

    retry = caller.client.post(f"/batches/{batch.pk}/retry").json()
    assert retry["error_budget"] == budget and retry["retry_of"] == str(batch.pk)
    retried = run_batch(Batch.objects.get(pk=retry["batch"]))
    assert retried.total == 920
    # The retry has the same budget and as bad a file: it stops as well.
    assert retried.status == S.CANCELLED and retried.failure_reason.startswith("error_budget_exceeded")


@override_settings(BATCH_CHUNK_LINES=20)
def test_a_batch_within_its_budget_completes(caller):
    budget = {"max_failed": 10, "max_failed_ratio": 0.2, "min_lines": 20}
    batch = run_batch(
        BatchFactory(
            caller=caller,
            operation="update_twin",
            content=updates(caller, 100, bad_every=10),
            error_budget=budget,
        )
    )
    assert batch.status == S.COMPLETED
    assert (batch.processed, batch.failed) == (100, 10)
    assert "reason" not in api_batch(caller, batch)


# Dry runs


def test_a_dry_run_completes_with_every_line_listed_and_nothing_run(caller):
    content = (
        jsonl([{"description": {"n": n}} for n in range(5)]) + b"\n" + jsonl([{"description": {"n": 5}}])
    )
    batch = run_batch(BatchFactory(caller=caller, content=content, validate_only=True))

    assert batch.status == S.COMPLETED
    assert history(batch) == [S.NEW, S.COPYING, S.COPIED, S.VALIDATING, S.COMPLETED]
    body = api_batch(caller, batch)
    assert body["validate_only"] is True
    assert body["progress"] == {
        "total": 6,
        "processed": 0,
        "succeeded": 0,
        "failed": 0,
        "rate_lps": None,
        "eta_ts": None,
    }
    results = read_results(batch.results_file)
    assert [line["line"] for line in results] == [1, 2, 3, 4, 5, 7]
    assert all(line["status"] is None and line["error"]["subcode"] == "validate_only" for line in results)
    assert not Twin.objects.exists()
    assert not Chunk.objects.filter(batch=batch).exists()

    # Retrying a dry run runs its lines for real.
    retry = caller.client.post(f"/batches/{batch.pk}/retry").json()
    assert "validate_only" not in retry
    assert run_batch(Batch.objects.get(pk=retry["batch"])).status == S.COMPLETED
    assert Twin.objects.count() == 6


def test_a_dry_run_of_an_invalid_file_fails_validation_as_usual(caller):
    content = b'{"description": {}}\n{"description": 5}\n'
    batch = run_batch(BatchFactory(caller=caller, content=content, validate_only=True))
    assert batch.status == S.VALIDATION_FAILED
    assert [line["line"] for line in read_results(batch.results_file)] == [2]


# Results while running


def fetch(url: str, client) -> list[dict]:
    """A download URL, followed as a client would (the partial one is this server's own)."""
    response = client.get(url.replace("http://testserver", ""), follow=True)
    assert response.status_code == 200, response
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return [json.loads(line) for line in body.decode().splitlines()]


@override_settings(BATCH_CHUNK_LINES=4)
def test_partial_results_while_processing_hold_only_run_lines_in_order(caller):
    batch = BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 20, bad_every=3))
    assert_error(caller.client.get(f"/batches/{batch.pk}?download=true"), 409, "results_not_ready")
    runner = into_processing(batch)
    # The second chunk ran first: the partial file has a gap, never a line out of order.
    second = Chunk.objects.get(batch=batch, index=1)
    Chunk.objects.filter(pk=second.pk).update(index=-1)
    assert chunks.chunk_claim_and_run(batch.pk)
    Chunk.objects.filter(pk=second.pk).update(index=1)
    assert chunks.chunk_claim_and_run(batch.pk)
    assert chunks.chunk_claim_and_run(batch.pk)

    running = caller.client.get(f"/batches/{batch.pk}?download=true").json()
    assert running["status"] == S.PROCESSING and running["download"]["partial"] is True
    partial = fetch(running["download"]["url"], caller.client)
    assert [line["line"] for line in partial] == list(range(1, 13))
    errors_url = caller.client.get(f"/batches/{batch.pk}?download=true&part=errors").json()["download"]["url"]
    assert [line["line"] for line in fetch(errors_url, caller.client)] == [3, 6, 9, 12]

    runner.drain()
    batch.refresh_from_db()
    assert batch.status == S.COMPLETED
    final = read_results(batch.results_file)
    assert partial == final[:12]
    finished = caller.client.get(f"/batches/{batch.pk}?download=true").json()
    assert "partial" not in finished["download"]
    # A partial URL stops at the end (a leaked one gives nothing more); a fresh URL gives the final file.
    ended = caller.client.get(running["download"]["url"].replace("http://testserver", ""))
    assert str(batch.pk) in assert_error(ended, 410, "download_url_ended")["description"]
    assert fetch(finished["download"]["url"], caller.client) == final


@override_settings(BATCH_CHUNK_LINES=4)
def test_partial_results_while_cancel_and_cancelling(caller):
    batch = BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 12))
    runner = first_chunk_run(batch)
    services.batch_cancel(batch=batch)
    for status in (S.CANCEL, S.CANCELLING):
        if status == S.CANCELLING:
            assert driver.batch_step(batch.pk, runner.enqueue)
        body = caller.client.get(f"/batches/{batch.pk}?download=true").json()
        assert body["status"] == status and body["download"]["partial"] is True
        assert [line["line"] for line in fetch(body["download"]["url"], caller.client)] == [1, 2, 3, 4]
    runner.advance(batch)
    runner.drain()
    assert Batch.objects.get(pk=batch.pk).status == S.CANCELLED
    taken_while_cancelling = body["download"]["url"].replace("http://testserver", "")
    assert_error(caller.client.get(taken_while_cancelling), 410, "download_url_ended")


def test_a_forged_partial_url_is_refused(caller):
    assert_error(caller.client.get("/downloads/partial/forged"), 403, "download_url_invalid")


# The schema and Trusted Twin's client


def test_the_schema_documents_the_controls():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    parts = schema["components"]["schemas"]
    create = parts["BatchCreate"]["properties"]
    assert create["validate_only"]["type"] == "boolean"
    assert set(create["error_budget"]["properties"]) == {"max_failed", "max_failed_ratio", "min_lines"}
    assert {"error_budget", "validate_only", "reason"} <= set(parts["Batch"]["properties"])
    assert "partial" in parts["Download"]["properties"]
    assert schema["paths"]["/downloads/partial/{token}"]["get"]["operationId"] == "download_partial"


@override_settings(BATCH_CHUNK_LINES=2)
def test_the_controls_through_the_trusted_twin_client(caller, live_server):
    client = TTRESTService(tt_auth=caller.secret, tt_base=live_server.url)

    def created_with(**controls):
        status, issued = client.create_upload_url()
        handler = json.loads(issued)["handler"]
        assert requests.put(json.loads(issued)["url"], data=updates(caller, 5), timeout=10).ok
        status, text = client.create_batch(body={"operation": "update_twin", "handler": handler, **controls})
        return status, json.loads(text)

    status, refused = created_with(error_budget={"max_failed_ratio": 2})
    assert status == 400 and refused["subcode"] == "invalid_error_budget"
    status, created = created_with(error_budget={"max_failed": 3}, validate_only=False)
    assert status == 201 and created["error_budget"] == {"max_failed": 3}
    status, dry = created_with(validate_only=True)
    assert status == 201 and dry["validate_only"] is True

    batch = Batch.objects.get(pk=created["batch"])
    first_chunk_run(batch)
    status, text = client.get_batch(created["batch"], params={"download": True})
    running = json.loads(text)
    assert status == 200 and running["download"]["partial"] is True
    downloaded = requests.get(running["download"]["url"], timeout=10)
    assert [json.loads(line)["line"] for line in downloaded.text.splitlines()] == [1, 2]


# Admin and pages


@override_settings(BATCH_CHUNK_LINES=2)
def test_the_admin_shows_the_controls_and_the_lines_run_so_far(admin_client, caller):
    batch = BatchFactory(
        caller=caller, operation="update_twin", content=updates(caller, 4), error_budget={"max_failed": 3}
    )
    first_chunk_run(batch)
    dry_run = BatchFactory(
        caller=caller, operation="update_twin", content=updates(caller, 4), validate_only=True
    )

    page = admin_client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()
    assert "stop at more than 3 failed lines" in page
    assert "/downloads/partial/" in page and "lines run so far" in page
    listed = admin_client.get(reverse("admin:batches_batch_changelist"), {"validate_only__exact": "1"})
    assert [row.pk for row in listed.context["cl"].result_list] == [dry_run.pk]


def test_the_detail_page_shows_the_controls(caller):
    budget = {"max_failed": 2, "max_failed_ratio": 0.1, "min_lines": 50}
    batch = BatchFactory(
        caller=caller,
        operation="update_twin",
        content=updates(caller, 4),
        error_budget=budget,
        validate_only=True,
    )
    client = Client()
    client.force_login(caller.user)
    page = client.get(f"/ui/batches/{batch.pk}").content.decode()
    assert (
        "stop at more than 2 failed lines, or more than 10 % of the lines run failed (from 50 lines on)"
        in page
    )
    assert "Only validated: no line is run." in page
    state = client.get(f"/ui/batches/{batch.pk}/state").json()
    assert state["batch"]["validate_only"] is True and state["downloads"]["partial"] is None

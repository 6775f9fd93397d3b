"""Trusted Twin's own Python client against a live server: the cache and batch operations
answer with the routes, status codes and fields its documented examples show."""

import hashlib
import json
import time
import uuid

import pytest
import requests
from trustedtwin.tt_api import TTRESTService

from batches.models import Batch, BatchStatus
from tests.support.batch_api import BATCHABLE
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import run_batch

CONTENT = b'{"description": {"serial": 1}}\n{"description": {"serial": 2}}\n'


@pytest.fixture
def client(caller, live_server) -> TTRESTService:
    return TTRESTService(tt_auth=caller.secret, tt_base=live_server.url)


def answer(call) -> tuple[int, dict]:
    status, text = call
    return status, json.loads(text)


def test_the_batch_lifecycle_through_the_trusted_twin_client(client):
    status, issued = answer(client.create_upload_url())
    assert status == 201
    assert set(issued) == {"url", "handler", "validity_ts"}
    assert requests.put(issued["url"], data=CONTENT, timeout=10).status_code == 200

    digest = hashlib.sha256(CONTENT).hexdigest()
    status, created = answer(
        client.create_batch(
            body={
                "operation": BATCHABLE,
                "handler": issued["handler"],
                "hash": digest,
                "batch_dict": {"k": "v"},
            }
        )
    )
    assert status == 201, created
    batch_id = created["batch"]
    assert created["status"] == "new" and created["hash"] == digest and created["batch_dict"] == {"k": "v"}
    assert isinstance(created["created_ts"], float) and isinstance(created["updated_ts"], float)

    status, fetched = answer(client.get_batch(batch_id))
    assert status == 200 and fetched["batch"] == batch_id and "download" not in fetched

    status, listed = answer(client.get_batches())
    assert status == 200 and listed == {"batches": {batch_id: "new"}, "cursor": None}
    status, filtered = answer(client.get_batches(params={"status": "cancelled", "limit": 10}))
    assert status == 200 and filtered["batches"] == {}

    status, cancelled = answer(client.update_batch(batch_id, body={"status": "cancel"}))
    assert status == 200 and cancelled["status"] == "cancel"
    # The pipeline, run here in a worker's stead, stops the batch and lists its lines.
    run_batch(Batch.objects.get(uuid=batch_id))
    status, filtered = answer(client.get_batches(params={"status": "cancelled", "limit": 10}))
    assert status == 200 and filtered["batches"] == {batch_id: "cancelled"}

    status, with_download = answer(client.get_batch(batch_id, params={"download": True}))
    assert status == 200
    assert set(with_download["download"]) == {"url", "validity_ts"}
    downloaded = requests.get(with_download["download"]["url"], timeout=10)
    assert downloaded.status_code == 200
    lines = [json.loads(line) for line in downloaded.text.splitlines()]
    assert [(line["line"], line["error"]["subcode"]) for line in lines] == [
        (1, "not_executed"),
        (2, "not_executed"),
    ]

    status, deleted = answer(client.delete_batch(batch_id))
    assert status == 200 and deleted["batch"] == batch_id
    assert Batch.objects.get(uuid=batch_id).delete_requested_at is not None


def test_the_client_reads_why_a_batch_waits_and_what_it_did(client, caller):
    """The batch object's accounting (summary, status_reason, queue) reaches the client's
    get_batch beside the fields it always read."""
    waiting = BatchFactory(caller=caller, operation=BATCHABLE, content=CONTENT)
    status, fetched = answer(client.get_batch(str(waiting.pk)))
    assert status == 200 and fetched["batch"] == str(waiting.pk) and fetched["status"] == "new"
    assert fetched["status_reason"] == "waiting_for_worker" and fetched["status_reason_description"]
    assert fetched["queue"] == {"position": 1} and fetched["summary"] is None
    assert fetched["progress"]["processed"] == 0

    finished = run_batch(BatchFactory(caller=caller, operation=BATCHABLE, content=CONTENT))
    status, fetched = answer(client.get_batch(str(finished.pk), params={"download": True}))
    assert status == 200 and fetched["status"] == "completed"
    assert fetched.get("status_reason") is None and fetched.get("queue") is None
    summary = fetched["summary"]
    assert {key: summary[key] for key in ("total", "succeeded", "failed", "not_executed", "by_subcode")} == {
        "total": 2,
        "succeeded": 2,
        "failed": 0,
        "not_executed": 0,
        "by_subcode": {},
    }
    results = requests.get(fetched["download"]["url"], timeout=10).content
    assert summary["results"] == {
        "lines": 2,
        "bytes": len(results),
        "sha256": hashlib.sha256(results).hexdigest(),
    }


def test_invalidate_upload_url_through_the_trusted_twin_client(client):
    _, issued = answer(client.create_upload_url())
    status, body = answer(client.invalidate_upload_url(issued["handler"]))
    assert status == 200 and body == {"handler": issued["handler"]}
    refused = requests.put(issued["url"], data=CONTENT, timeout=10)
    assert refused.status_code == 403 and refused.json()["subcode"] == "upload_url_invalidated"


def test_refusals_carry_the_error_body(client):
    for status, body in (
        answer(client.get_batch(str(uuid.uuid4()))),
        answer(client.invalidate_upload_url("c803382b-f175-4e36-b807-b08651d3d297-1688480283")),
    ):
        assert status == 404 and set(body) == {"subcode", "description", "trace"}
    status, body = answer(client.create_batch(body={"operation": BATCHABLE, "handler": str(uuid.uuid4())}))
    assert status == 404 and body["subcode"] == "handler_unknown"
    status, body = answer(client.get_batches(params={"limit": 5000}))
    assert status == 400


def test_the_client_creates_a_batch_with_an_id_field_and_echoed_fields(client):
    """The client sends its body as given, so the correlation fields (contract §15) reach the
    service, come back on the batch and are refused with their own subcodes."""
    _, issued = answer(client.create_upload_url())
    lines = b'{"ref": "a-1", "description": {"n": 1}}\n'
    assert requests.put(issued["url"], data=lines, timeout=10).status_code == 200
    request = {"operation": BATCHABLE, "handler": issued["handler"]}

    status, body = answer(client.create_batch(body={**request, "echo_fields": ["a", "a"]}))
    assert status == 400 and body["subcode"] == "invalid_echo_fields"
    status, body = answer(client.create_batch(body={**request, "id_field": 7}))
    assert status == 400 and body["subcode"] == "invalid_id_field"

    fields = {"id_field": "ref", "echo_fields": ["description"]}
    status, created = answer(client.create_batch(body={**request, **fields}))
    assert status == 201, created
    assert (created["id_field"], created["echo_fields"]) == ("ref", ["description"])
    status, fetched = answer(client.get_batch(created["batch"]))
    assert status == 200 and (fetched["id_field"], fetched["echo_fields"]) == ("ref", ["description"])


def test_the_client_schedules_orders_pauses_and_resumes_a_batch(client, caller):
    """The client sends its bodies as given, so the time-and-order fields (contract §14) reach
    create_batch and come back on the batch, and its update_batch pauses, resumes and
    reschedules."""
    parent = BatchFactory(caller=caller, operation=BATCHABLE, content=CONTENT, status=BatchStatus.COMPLETED)
    _, issued = answer(client.create_upload_url())
    assert requests.put(issued["url"], data=CONTENT, timeout=10).status_code == 200
    request = {"operation": BATCHABLE, "handler": issued["handler"]}

    status, body = answer(client.create_batch(body={**request, "priority": "high"}))
    assert status == 400 and body["subcode"] == "invalid_priority"
    not_before = round(time.time() + 3600, 3)
    after = [{"batch": str(parent.uuid), "require": "no_failures"}]
    status, created = answer(
        client.create_batch(body={**request, "not_before": not_before, "priority": 2, "after": after})
    )
    assert status == 201, created
    assert (created["not_before"], created["priority"], created["after"]) == (not_before, 2, after)

    status, rescheduled = answer(
        client.update_batch(created["batch"], body={"priority": 9, "not_before": None})
    )
    assert status == 200, rescheduled
    assert rescheduled["priority"] == 9 and "not_before" not in rescheduled

    running = BatchFactory(caller=caller, operation=BATCHABLE, content=CONTENT, status=BatchStatus.PROCESSING)
    status, paused = answer(client.update_batch(str(running.uuid), body={"status": "paused"}))
    assert status == 200 and paused["status"] == "paused"
    status, resumed = answer(client.update_batch(str(running.uuid), body={"status": "processing"}))
    assert status == 200 and resumed["status"] == "processing"


def test_a_mixed_batch_through_the_trusted_twin_client(client, caller):
    """`create_batch(operation="mixed")`: a twin, then its identity and ledger entry by
    reference; the twin the client then reads has both."""
    lines = [
        {"op": "create_twin", "ref": "pump", "description": {"kind": "pump"}},
        {
            "op": "create_twin_identity",
            "twin": {"$ref": "pump.creation_certificate.uuid"},
            "identities": {"RFID#PUMP1": {}},
        },
        {
            "op": "add_twin_ledger_entry",
            "twin": {"$ref": "pump.creation_certificate.uuid"},
            "entries": {"rpm": {"value": 1450}},
        },
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    status, issued = answer(client.create_upload_url())
    assert requests.put(issued["url"], data=content, timeout=10).status_code == 200
    status, created = answer(client.create_batch(body={"operation": "mixed", "handler": issued["handler"]}))
    assert status == 201 and created["operation"] == "mixed", created
    batch = run_batch(Batch.objects.get(uuid=created["batch"]))
    assert batch.status == BatchStatus.COMPLETED, batch.failure_reason

    status, fetched = answer(client.get_batch(created["batch"], params={"download": True}))
    results = [
        json.loads(line) for line in requests.get(fetched["download"]["url"], timeout=10).text.splitlines()
    ]
    assert [line["status"] for line in results] == [201, 201, 201]
    twin = results[0]["result"]["creation_certificate"]["uuid"]
    assert answer(client.resolve_twin_identity("RFID#PUMP1")) == (200, {"twins": [twin]})
    status, entry = answer(client.get_twin_ledger_entry(twin, params={"entries": "rpm"}))
    assert status == 200 and entry["entries"]["rpm"]["value"] == 1450

"""POST, GET, PATCH, DELETE /batches: every create_batch rule, every transition rule, paging."""

import hashlib
import json
import random
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core.files.storage import default_storage
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from batches.models import Batch, BatchStatus, Upload
from batches.statuses import CANCELLABLE, TERMINAL
from batches.tasks import batch_advance
from tests.support.assertions import assert_error
from tests.support.batch_api import BATCHABLE, NOT_BATCHABLE, create_batch, upload_url, uploaded_handler
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory, moves_to
from tests.support.inline_pipeline import history, run_batch

S = BatchStatus
CONTENT = b'{"description": {"n": 1}}\n'


@pytest.fixture
def enqueued(monkeypatch) -> list[str]:
    """The batch ids the pipeline was asked to advance (the pipeline itself is not run here)."""
    asked = []
    monkeypatch.setattr(batch_advance, "apply_async", lambda args: asked.append(args[0]))
    return asked


# POST /batches


def test_create_batch_answers_201_with_the_batch_and_enqueues_it_after_commit(
    caller, enqueued, django_capture_on_commit_callbacks
):
    handler = uploaded_handler(caller)
    with django_capture_on_commit_callbacks(execute=True):
        response = create_batch(caller, handler)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "batch",
        "operation",
        "status",
        "status_reason",
        "status_reason_description",
        "queue",
        "stalled_since",
        "id_field",
        "echo_fields",
        "priority",
        "created_ts",
        "updated_ts",
        "progress",
        "summary",
    }
    assert (body["status_reason"], body["queue"], body["stalled_since"]) == (
        "waiting_for_worker",
        {"position": 1},
        None,
    )
    assert body["status"] == "new" and body["operation"] == BATCHABLE
    assert body["progress"] == {
        "total": None,
        "processed": 0,
        "succeeded": 0,
        "failed": 0,
        "rate_lps": None,
        "eta_ts": None,
    }
    assert enqueued == [body["batch"]]

    batch = Batch.objects.get(uuid=body["batch"])
    assert batch.account == caller.account and batch.created_by == caller.account_user
    assert [(change.from_status, change.to_status) for change in batch.history.all()] == [("", "new")]
    assert Upload.objects.get(handler=handler).used_at is not None


def test_create_batch_accepts_the_trusted_twin_body_template_with_nulls(caller):
    body = {"handler": uploaded_handler(caller), "operation": BATCHABLE, "hash": None, "batch_dict": None}
    response = caller.client.post("/batches", body, format="json")
    assert response.status_code == 201, response.content
    assert "hash" not in response.json() and "batch_dict" not in response.json()


def test_handler_unknown(caller):
    assert_error(create_batch(caller, str(uuid.uuid4())), 404, "handler_unknown")
    assert_error(create_batch(caller, "not-a-uuid"), 404, "handler_unknown")


def test_handler_expired(caller):
    handler = uploaded_handler(caller)
    Upload.objects.filter(handler=handler).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(create_batch(caller, handler), 400, "handler_expired")


def test_handler_invalidated(caller):
    handler = uploaded_handler(caller)
    caller.client.delete(f"/cache/{handler}")
    assert_error(create_batch(caller, handler), 400, "handler_invalidated")


def test_handler_with_nothing_uploaded(caller):
    assert_error(create_batch(caller, upload_url(caller.client)["handler"]), 400, "handler_not_uploaded")


def test_handler_used_by_another_batch(caller):
    handler = uploaded_handler(caller)
    assert create_batch(caller, handler).status_code == 201
    assert_error(create_batch(caller, handler), 400, "handler_used")


def test_handler_of_another_account_is_unknown(caller, stranger):
    """Answered exactly as a handler that never existed, so it confirms nothing."""
    assert_error(create_batch(stranger, uploaded_handler(caller)), 404, "handler_unknown")


def test_operation_unknown(caller):
    assert_error(
        create_batch(caller, uploaded_handler(caller), "no_such_operation"), 400, "operation_unknown"
    )


def test_operation_not_batchable(caller):
    assert_error(
        create_batch(caller, uploaded_handler(caller), NOT_BATCHABLE), 400, "operation_not_batchable"
    )


def test_operation_not_allowed_by_the_role_is_403(make_caller):
    without_operation = make_caller(
        statement={"effect": "allow", "actions": ["create_upload_url", "create_batch"]}
    )
    body = assert_error(create_batch(without_operation, uploaded_handler(without_operation)), 403)
    assert body["subcode"] == "action_not_allowed" and BATCHABLE in body["description"]

    without_create_batch = make_caller(statement={"effect": "deny", "actions": ["create_batch"]})
    assert_error(create_batch(without_create_batch, uploaded_handler(without_create_batch)), 403)


def test_missing_fields_are_400(caller):
    assert_error(
        caller.client.post("/batches", {"operation": BATCHABLE}, format="json"), 400, "invalid_input"
    )
    assert_error(caller.client.post("/batches", {"handler": "x"}, format="json"), 400, "invalid_input")
    assert_error(caller.client.post("/batches", "[1]", content_type="application/json"), 400)
    assert_error(caller.client.post("/batches", "{not json", content_type="application/json"), 400)


def test_hash_of_the_bytes_is_echoed(caller):
    digest = hashlib.sha256(CONTENT).hexdigest()
    response = create_batch(caller, uploaded_handler(caller, CONTENT), hash=digest)
    assert response.status_code == 201
    assert response.json()["hash"] == digest
    assert caller.client.get(f"/batches/{response.json()['batch']}").json()["hash"] == digest


def test_a_wrong_but_well_formed_hash_is_accepted_and_echoed(caller):
    """Whether it matches the bytes is the pipeline's check (the batch ends in hash_mismatch)."""
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    response = create_batch(caller, uploaded_handler(caller, CONTENT), hash=wrong)
    assert response.status_code == 201
    assert response.json()["hash"] == wrong


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, "g" * 64, "a" * 63, "a" * 65, 12])
def test_hash_format(caller, bad):
    assert_error(create_batch(caller, uploaded_handler(caller), hash=bad), 400, "invalid_hash")


def test_batch_dict_is_echoed(caller):
    batch_dict = {"customer": "acme", "_n2": [1, {"deep": None}]}
    response = create_batch(caller, uploaded_handler(caller), batch_dict=batch_dict)
    assert response.status_code == 201
    assert response.json()["batch_dict"] == batch_dict
    assert create_batch(caller, uploaded_handler(caller), batch_dict={}).json()["batch_dict"] == {}


@pytest.mark.parametrize("bad", [[1], "text", 3])
def test_batch_dict_must_be_an_object(caller, bad):
    assert_error(create_batch(caller, uploaded_handler(caller), batch_dict=bad), 400, "invalid_batch_dict")


@pytest.mark.parametrize("key", ["Upper", "1st", "dash-ed", "", "k" * 65])
def test_batch_dict_keys_are_named_when_refused(caller, key):
    body = assert_error(
        create_batch(caller, uploaded_handler(caller), batch_dict={"fine": 1, key: 2}),
        400,
        "invalid_batch_dict_key",
    )
    assert repr(key) in body["description"]


def test_batch_dict_over_64_kib_is_400(caller):
    at_limit = {"a": "x" * (64 * 1024 - len('{"a":""}'))}
    assert create_batch(caller, uploaded_handler(caller), batch_dict=at_limit).status_code == 201
    over = {"small": 1, "big": "x" * (64 * 1024)}
    body = assert_error(
        create_batch(caller, uploaded_handler(caller), batch_dict=over), 400, "batch_dict_too_large"
    )
    assert "'big'" in body["description"]


def test_idempotency_key_returns_the_same_batch_for_the_same_body(caller):
    handler = uploaded_handler(caller)
    first = create_batch(caller, handler, headers={"Idempotency-Key": "order-17"})
    again = create_batch(caller, handler, headers={"Idempotency-Key": "order-17"})
    assert first.status_code == again.status_code == 201
    assert again.json()["batch"] == first.json()["batch"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert Batch.objects.filter(account=caller.account).count() == 1


def test_idempotency_key_with_a_different_body_is_409(caller):
    handler = uploaded_handler(caller)
    create_batch(caller, handler, headers={"Idempotency-Key": "order-17"})
    changed = create_batch(caller, handler, headers={"Idempotency-Key": "order-17"}, batch_dict={"k": 1})
    assert_error(changed, 409, "idempotency_key_reused")


def test_an_overlong_idempotency_key_is_400(caller):
    response = create_batch(caller, uploaded_handler(caller), headers={"Idempotency-Key": "k" * 201})
    assert_error(response, 400, "invalid_idempotency_key")


def test_idempotency_keys_are_per_account_and_expire_after_24_hours(caller, stranger):
    first = create_batch(caller, uploaded_handler(caller), headers={"Idempotency-Key": "k"}).json()
    assert (
        create_batch(stranger, uploaded_handler(stranger), headers={"Idempotency-Key": "k"}).status_code
        == 201
    )

    Batch.objects.filter(uuid=first["batch"]).update(
        created_at=timezone.now() - timedelta(hours=24, seconds=1)
    )
    later = create_batch(caller, uploaded_handler(caller), headers={"Idempotency-Key": "k"})
    assert later.status_code == 201 and later.json()["batch"] != first["batch"]
    assert "Idempotent-Replayed" not in later.headers


# GET /batches/{batch}


def test_get_batch_shows_progress_and_retry_of(caller):
    original = BatchFactory(caller=caller, status=S.COMPLETED)
    retry = BatchFactory(
        caller=caller, status=S.PROCESSING, retry_of=original, total=10, processed=4, succeeded=3, failed=1
    )
    body = caller.client.get(f"/batches/{retry.uuid}").json()
    assert body["retry_of"] == str(original.uuid)
    assert body["progress"] == {
        "total": 10,
        "processed": 4,
        "succeeded": 3,
        "failed": 1,
        "rate_lps": None,
        "eta_ts": None,
    }
    assert body["status"] == "processing"
    assert "retry_of" not in caller.client.get(f"/batches/{original.uuid}").json()


def test_another_accounts_batch_is_404(caller, stranger):
    batch = BatchFactory(caller=caller)
    for response in (
        stranger.client.get(f"/batches/{batch.uuid}"),
        stranger.client.patch(f"/batches/{batch.uuid}", {"status": "cancel"}, format="json"),
        stranger.client.delete(f"/batches/{batch.uuid}"),
        caller.client.get("/batches/not-a-uuid"),
    ):
        assert_error(response, 404, "not_found")
    assert Batch.objects.get(pk=batch.pk).status == S.NEW


def test_download_is_409_until_there_is_a_file(caller):
    # From processing on, the lines run so far are offered (tests/batches/test_batch_controls.py).
    batch = BatchFactory(caller=caller, status=S.VALIDATING)
    assert_error(caller.client.get(f"/batches/{batch.uuid}?download=true"), 409, "results_not_ready")
    assert_error(
        caller.client.get(f"/batches/{batch.uuid}?download=true&part=errors"), 409, "errors_not_ready"
    )
    assert_error(caller.client.get(f"/batches/{batch.uuid}?download=true&part=everything"), 400)


@pytest.mark.parametrize("part, field", [("results", "results_file"), ("errors", "errors_file")])
def test_download_url_streams_the_file_without_a_secret(caller, part, field):
    unknown_twin = {"twin": str(uuid.uuid4()), "description": {}}
    batch = run_batch(BatchFactory(caller=caller, operation="update_twin", content=jsonl([unknown_twin])))
    with default_storage.open(getattr(batch, field), "rb") as stored:
        content = stored.read()
    assert [json.loads(line)["line"] for line in content.splitlines()] == [1]
    body = caller.client.get(f"/batches/{batch.uuid}", {"download": "True", "part": part}).json()
    assert set(body["download"]) == {"url", "validity_ts"}
    assert body["download"]["validity_ts"] > timezone.now().timestamp() + 3500

    downloaded = APIClient().get(urlsplit(body["download"]["url"]).path)
    assert downloaded.status_code == 200
    assert b"".join(downloaded.streaming_content) == content
    assert downloaded["Content-Disposition"] == f'attachment; filename="{batch.uuid}-{part}.jsonl"'
    assert "download" not in caller.client.get(f"/batches/{batch.uuid}").json()


def test_download_url_is_refused_when_forged_expired_or_gone(caller):
    batch = run_batch(BatchFactory(caller=caller))
    url = urlsplit(caller.client.get(f"/batches/{batch.uuid}?download=1").json()["download"]["url"]).path
    assert_error(APIClient().get(url[:-2] + "xx"), 403, "download_url_invalid")
    with override_settings(DOWNLOAD_URL_VALIDITY_SECONDS=-1):
        expired = caller.client.get(f"/batches/{batch.uuid}?download=1").json()["download"]["url"]
    assert_error(APIClient().get(urlsplit(expired).path), 403, "download_url_expired")

    default_storage.delete(batch.results_file)
    assert_error(APIClient().get(url), 404, "not_found")


# PATCH /batches/{batch}


@pytest.mark.parametrize("status", sorted(CANCELLABLE))
def test_cancel_from_a_cancellable_status(caller, enqueued, django_capture_on_commit_callbacks, status):
    batch = BatchFactory(caller=caller, status=status)
    with django_capture_on_commit_callbacks(execute=True):
        response = caller.client.patch(f"/batches/{batch.uuid}", {"status": "cancel"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancel"
    assert batch.history.last().to_status == "cancel"
    assert enqueued == [str(batch.uuid)]


@pytest.mark.parametrize("status", [S.CANCEL, S.CANCELLING])
def test_cancel_while_cancelling_changes_nothing(caller, status):
    batch = BatchFactory(caller=caller, status=status)
    recorded = history(batch)
    response = caller.client.patch(f"/batches/{batch.uuid}", {"status": "cancel"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == status
    assert history(batch) == recorded


def test_cancel_twice(caller):
    batch = BatchFactory(caller=caller, status=S.PROCESSING)
    first = caller.client.patch(f"/batches/{batch.uuid}", {"status": "cancel"}, format="json")
    second = caller.client.patch(f"/batches/{batch.uuid}", {"status": "cancel"}, format="json")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert history(batch) == [S.NEW, *moves_to(S.PROCESSING), S.CANCEL], "cancelled once"


@pytest.mark.parametrize(
    "status, subcode",
    [(status, "batch_finished") for status in sorted(TERMINAL)]
    + [
        (S.PROCESSED, "batch_finishing"),
        (S.WRITING_RESULTS, "batch_finishing"),
        (S.DELETING, "batch_deleting"),
    ],
)
def test_cancel_is_409_once_every_line_ran(caller, status, subcode):
    batch = BatchFactory(caller=caller, status=status)
    assert_error(
        caller.client.patch(f"/batches/{batch.uuid}", {"status": "cancel"}, format="json"), 409, subcode
    )
    assert Batch.objects.get(pk=batch.pk).status == status


@pytest.mark.parametrize(
    "body",
    [
        {"status": "completed"},
        {"status": "new"},
        {},
        {"status": "cancel", "operation": "x"},
        {"hash": "a" * 64},
        ["cancel"],
    ],
)
def test_patch_allows_nothing_but_cancel(caller, body):
    batch = BatchFactory(caller=caller)
    assert_error(
        caller.client.patch(f"/batches/{batch.uuid}", body, format="json"), 400, "unsupported_change"
    )
    assert Batch.objects.get(pk=batch.pk).status == S.NEW


# DELETE /batches/{batch}


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_delete_a_finished_batch_starts_deleting(
    caller, enqueued, django_capture_on_commit_callbacks, status
):
    batch = BatchFactory(caller=caller, status=status)
    with django_capture_on_commit_callbacks(execute=True):
        response = caller.client.delete(f"/batches/{batch.uuid}")
    assert response.status_code == 200
    assert response.json()["status"] == "deleting"
    assert Batch.objects.get(pk=batch.pk).delete_requested_at is not None
    assert enqueued == [str(batch.uuid)]


@pytest.mark.parametrize("status", sorted(CANCELLABLE))
def test_delete_a_running_batch_cancels_it_first(caller, status):
    batch = BatchFactory(caller=caller, status=status)
    response = caller.client.delete(f"/batches/{batch.uuid}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancel"
    assert Batch.objects.get(pk=batch.pk).delete_requested_at is not None


@pytest.mark.parametrize("status", [S.CANCEL, S.CANCELLING, S.PROCESSED, S.WRITING_RESULTS])
def test_delete_a_stopping_or_finishing_batch_marks_it_for_the_pipeline(caller, status):
    batch = BatchFactory(caller=caller, status=status)
    recorded = history(batch)
    response = caller.client.delete(f"/batches/{batch.uuid}")
    assert response.status_code == 200
    assert response.json()["status"] == status
    assert Batch.objects.get(pk=batch.pk).delete_requested_at is not None
    assert history(batch) == recorded


def test_delete_twice_is_harmless(caller):
    batch = BatchFactory(caller=caller, status=S.COMPLETED)
    assert caller.client.delete(f"/batches/{batch.uuid}").json()["status"] == "deleting"
    again = caller.client.delete(f"/batches/{batch.uuid}")
    assert again.status_code == 200 and again.json()["status"] == "deleting"


# GET /batches


def many_batches(account, count: int) -> list[Batch]:
    """`count` batches over a day, several sharing a creation time (the cursor must break ties)."""
    rng = random.Random(7)
    statuses = [S.NEW, S.PROCESSING, S.COMPLETED, S.CANCELLED]
    operations = [BATCHABLE, "update_twin"]
    batches = Batch.objects.bulk_create(
        Batch(account=account, operation=operations[i % 2], status=statuses[i % 4]) for i in range(count)
    )
    start = timezone.now() - timedelta(days=1)
    for batch in batches:
        # auto_now_add ignores a given value on create, so times are spread afterwards.
        batch.created_at = start + timedelta(seconds=rng.randrange(count // 3))
    Batch.objects.bulk_update(batches, ["created_at"], batch_size=500)
    return batches


def all_pages(client, **query) -> list[dict]:
    pages, cursor = [], None
    while True:
        response = client.get("/batches", {**query, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        pages.append(response.json())
        cursor = pages[-1]["cursor"]
        if cursor is None:
            return pages


def test_paging_over_2500_batches_returns_each_once_newest_first(caller, stranger):
    batches = many_batches(caller.account, 2500)
    many_batches(stranger.account, 10)
    pages = all_pages(caller.client)
    assert [len(page["batches"]) for page in pages] == [1000, 1000, 500]
    listed = [batch_id for page in pages for batch_id in page["batches"]]
    assert len(listed) == len(set(listed)) == 2500
    assert set(listed) == {str(batch.uuid) for batch in batches}
    created = dict(Batch.objects.filter(account=caller.account).values_list("uuid", "created_at"))
    times = [created[uuid.UUID(batch_id)] for batch_id in listed]
    assert times == sorted(times, reverse=True)
    assert pages[0]["batches"][listed[0]] == Batch.objects.get(uuid=listed[0]).status


# The rows above hold more unfinished batches than an account may have by default.
@override_settings(QUOTA_MAX_ACTIVE_BATCHES=100)
def test_pages_stay_stable_while_new_batches_arrive(caller):
    batches = many_batches(caller.account, 30)
    first = caller.client.get("/batches", {"limit": 10}).json()
    BatchFactory(caller=caller)
    rest = all_pages(caller.client, limit=10, cursor=first["cursor"])
    listed = list(first["batches"]) + [batch_id for page in rest for batch_id in page["batches"]]
    assert sorted(listed) == sorted(str(batch.uuid) for batch in batches)


def test_filters_combine_across_pages(caller):
    batches = many_batches(caller.account, 600)
    ordered = sorted(batches, key=lambda batch: batch.created_at)
    ge, le = ordered[100].created_at.timestamp(), ordered[500].created_at.timestamp()
    query = {"status": "completed", "operation": BATCHABLE, "ge": f"{ge:.3f}", "le": f"{le:.3f}"}
    expected = {
        str(batch.uuid)
        for batch in batches
        if batch.status == S.COMPLETED
        and batch.operation == BATCHABLE
        and round(ge, 3) <= round(batch.created_at.timestamp(), 3) <= round(le, 3)
    }
    assert 20 < len(expected) < 300
    pages = all_pages(caller.client, limit=13, **query)
    listed = [batch_id for page in pages for batch_id in page["batches"]]
    assert len(listed) == len(set(listed)) and set(listed) == expected
    assert all(status == "completed" for page in pages for status in page["batches"].values())


def test_an_empty_list_has_a_null_cursor(caller):
    assert caller.client.get("/batches").json() == {"batches": {}, "cursor": None}


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"ge": "yesterday"},
        {"le": "nan"},
        {"ge": -1},
        {"status": "running"},
        {"cursor": "not-a-cursor"},
        {"cursor": "WyJ4IiwgInkiXQ=="},
    ],
)
def test_bad_list_queries_are_400(caller, query):
    subcode = "invalid_cursor" if "cursor" in query else None
    assert_error(caller.client.get("/batches", query), 400, subcode)

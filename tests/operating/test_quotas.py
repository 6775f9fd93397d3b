"""Quotas per account: 429 quota_exceeded naming the quota, Retry-After where waiting helps,
defaults from settings and per-account values from the admin, and two creates racing for the
last free place never both getting it."""

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from batches import services
from batches.models import Batch, BatchStatus
from batchsite.errors import ApplicationError
from operating.models import AccountQuota, QuotaRefusalHour
from operating.services import QuotaExceeded, usage_flush
from tests.scaleout.conftest import moto_endpoint, s3  # noqa: F401 (fixtures)
from tests.support.batch_api import create_batch, put_file, upload_url, uploaded_handler
from tests.support.batch_files import jsonl
from tests.support.factories import UploadFactory
from tests.support.inline_pipeline import read_results, run_batch
from tests.support.s3_bucket import presigned_upload
from twins.models import Twin

pytestmark = pytest.mark.django_db


def refused_for(response, quota: str) -> dict:
    assert response.status_code == 429, response.content
    body = response.json()
    assert set(body) == {"subcode", "description", "trace"}
    assert body["subcode"] == "quota_exceeded" and quota in body["description"]
    return body


def test_max_active_batches_refuses_until_one_finishes(caller):
    AccountQuota.objects.create(account=caller.account, max_active_batches=2)
    first = create_batch(caller, uploaded_handler(caller))
    assert first.status_code == 201
    assert create_batch(caller, uploaded_handler(caller)).status_code == 201
    handler = uploaded_handler(caller)

    refused = create_batch(caller, handler)
    refused_for(refused, "max_active_batches")
    assert refused["Retry-After"] == "30"

    finished = run_batch(Batch.objects.get(pk=first.json()["batch"]))
    assert finished.status == BatchStatus.COMPLETED
    # The refused request used nothing up: the same handler works now.
    assert create_batch(caller, handler).status_code == 201


def test_the_default_comes_from_settings(caller):
    with override_settings(QUOTA_MAX_ACTIVE_BATCHES=1):
        assert create_batch(caller, uploaded_handler(caller)).status_code == 201
        refused_for(create_batch(caller, uploaded_handler(caller)), "max_active_batches")
    assert create_batch(caller, uploaded_handler(caller)).status_code == 201


def test_max_batch_lines_per_day_refuses_until_midnight_utc(caller):
    AccountQuota.objects.create(account=caller.account, max_batch_lines_per_day=3)
    handler = uploaded_handler(caller, jsonl([{"description": {"n": n}} for n in range(3)]))
    batch = run_batch(Batch.objects.get(pk=create_batch(caller, handler).json()["batch"]))
    assert batch.processed == 3

    refused = create_batch(caller, uploaded_handler(caller))
    refused_for(refused, "max_batch_lines_per_day")
    now = datetime.now(UTC)
    to_midnight = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    assert abs(int(refused["Retry-After"]) - to_midnight) <= 2


@pytest.mark.parametrize("validated_in_parallel", [False, True], ids=["whole", "parallel"])
def test_batches_created_under_the_daily_quota_run_only_while_their_lines_fit(
    caller, settings, validated_in_parallel
):
    """Each batch is admitted while the day has room; its lines are judged once validation
    counted them. The one that would pass the quota is stopped as a cancel does: nothing of
    it runs, every line is listed as never run, and the reason names the quota."""
    if validated_in_parallel:
        settings.BATCH_VALIDATE_PARALLEL_MIN_LINES = 10
        settings.BATCH_CHUNK_LINES = 20
    AccountQuota.objects.create(account=caller.account, max_batch_lines_per_day=100)
    sixty_lines = jsonl({"description": {"n": n}} for n in range(60))
    batches = [
        Batch.objects.get(pk=create_batch(caller, uploaded_handler(caller, sixty_lines)).json()["batch"])
        for _ in range(2)
    ]
    first, second = (run_batch(batch) for batch in batches)
    assert first.status == BatchStatus.COMPLETED and first.processed == 60
    assert second.status == BatchStatus.CANCELLED and second.processed == 0
    assert second.failure_reason.startswith("quota_exceeded:")
    assert "max_batch_lines_per_day, 100" in second.failure_reason
    results = read_results(second.results_file)
    assert len(results) == 60 and {line["error"]["subcode"] for line in results} == {"not_executed"}
    assert Twin.objects.filter(account=caller.account).count() == 60
    usage_flush(force=True)
    assert QuotaRefusalHour.objects.filter(account=caller.account, quota="max_batch_lines_per_day").exists()


def test_max_upload_bytes_refuses_the_upload_without_retry_after(caller):
    AccountQuota.objects.create(account=caller.account, max_upload_bytes=10)
    issued = upload_url(caller.client)
    refused = put_file(issued["url"], b"x" * 11)
    refused_for(refused, "max_upload_bytes")
    assert "Retry-After" not in refused
    assert put_file(issued["url"], b"x" * 10).status_code == 200


def test_refusals_are_counted_for_the_dashboard(caller):
    AccountQuota.objects.create(account=caller.account, max_active_batches=0)
    for _ in range(3):
        refused_for(create_batch(caller, uploaded_handler(caller)), "max_active_batches")
    usage_flush(force=True)
    refusals = QuotaRefusalHour.objects.get(account=caller.account, quota="max_active_batches")
    assert refusals.count == 3


def test_staff_set_an_accounts_quota_in_the_admin(admin_client, caller):
    response = admin_client.post(
        reverse("admin:operating_accountquota_add"),
        {
            "account": str(caller.account.pk),
            "max_active_batches": "1",
            "max_batch_lines_per_day": "",
            "max_upload_bytes": "",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    listing = admin_client.get(reverse("admin:operating_accountquota_changelist"))
    assert "50,000,000 (default)" in listing.content.decode()
    assert create_batch(caller, uploaded_handler(caller)).status_code == 201
    refused_for(create_batch(caller, uploaded_handler(caller)), "max_active_batches")


@pytest.mark.django_db(transaction=True)
def test_parallel_creates_never_both_take_the_last_place(caller):
    """Eight threads, each with its own database connection, create a batch at once for an
    account with one free place: exactly one gets it (on PostgreSQL the quota row's lock makes
    them take turns)."""
    AccountQuota.objects.create(account=caller.account, max_active_batches=1)
    uploads = [UploadFactory(caller=caller, content=b'{"description": {}}\n') for _ in range(8)]
    start = threading.Barrier(len(uploads))
    outcomes: list = []

    def create(upload):
        try:
            start.wait()
            services.batch_create(
                account=caller.account, user=caller.user, handler=str(upload.handler), operation="create_twin"
            )
            outcomes.append("created")
        except ApplicationError as error:
            outcomes.append(error.subcode if isinstance(error, QuotaExceeded) else repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(upload,)) for upload in uploads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["created"] + ["quota_exceeded"] * 7
    assert Batch.objects.filter(account=caller.account).count() == 1


def test_with_s3_the_upload_is_counted_and_checked_when_the_batch_is_created(caller, s3):  # noqa: F811
    """The bytes go straight to the bucket; the service sees them at create_batch."""
    AccountQuota.objects.create(account=caller.account, max_upload_bytes=40)
    small, large = b'{"description": {}}\n', b'{"description": {"n": 1234567890123}}\n' * 2
    kept = presigned_upload(caller, s3, small)
    refused_for(create_batch(caller, presigned_upload(caller, s3, large)), "max_upload_bytes")
    assert create_batch(caller, kept).status_code == 201
    usage = caller.client.get("/usage").json()["usage"]
    assert sum(hour["upload_bytes"] for hour in usage.values()) == len(small)

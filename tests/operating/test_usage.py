"""GET /usage and /usage/{user}: Trusted Twin's routes and shape, hourly UTC buckets of the last
7 days with activity, counted where the work commits, API calls without a write per request."""

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from trustedtwin.tt_api import TTRESTService

from batches.models import Batch, BatchStatus
from operating.models import UsageHour
from operating.selectors import lines_per_minute
from operating.services import usage_record_batch_lines
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import run_batch

COUNTERS = {"batches_created", "batch_lines", "batch_lines_failed", "upload_bytes", "api_calls"}


def answer(call) -> tuple[int, dict]:
    status, text = call
    return status, json.loads(text)


def current_hour() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d-%H")


def totals(usage: dict) -> dict:
    summed = dict.fromkeys(COUNTERS, 0)
    for counts in usage.values():
        assert set(counts) == COUNTERS
        for name, value in counts.items():
            summed[name] += value
    return summed


@pytest.mark.django_db(transaction=True)
def test_trusted_twin_client_reads_a_real_batchs_usage(caller, make_caller, live_server):
    client = TTRESTService(tt_auth=caller.secret, tt_base=live_server.url)
    content = jsonl([{"description": {"n": n}} for n in range(3)])
    status, issued = answer(client.create_upload_url())
    assert status == 201
    assert requests.put(issued["url"], data=content, timeout=10).status_code == 200
    body = {"operation": "create_twin", "handler": issued["handler"]}
    status, created = answer(client.create_batch(body=body))
    assert status == 201, created
    batch = run_batch(Batch.objects.get(pk=created["batch"]))
    assert batch.status == BatchStatus.COMPLETED

    status, body = answer(client.get_account_usage())
    assert status == 200 and set(body) == {"usage"}
    assert current_hour() in body["usage"]
    # create_upload_url and create_batch; the PUT to the signed URL carries no secret.
    assert totals(body["usage"]) == {
        "batches_created": 1,
        "batch_lines": 3,
        "batch_lines_failed": 0,
        "upload_bytes": len(content),
        "api_calls": 2,
    }

    status, mine = answer(client.get_user_usage(str(caller.account_user.uuid)))
    assert status == 200 and current_hour() in mine["usage"]
    # get_account_usage counts too, now.
    assert totals(mine["usage"])["batch_lines"] == 3 and totals(mine["usage"])["api_calls"] == 3

    colleague = make_caller(account=caller.account)
    status, theirs = answer(client.get_user_usage(str(colleague.account_user.uuid)))
    assert status == 200 and theirs == {"usage": {}}
    stranger = make_caller()
    status, refused = answer(client.get_user_usage(str(stranger.account_user.uuid)))
    assert status == 404 and refused["subcode"] == "not_found"


def test_failed_lines_are_counted_apart(caller):
    lines = [{"twin": "00000000-0000-4000-8000-000000000000", "description": {}}] * 2
    batch = run_batch(BatchFactory(caller=caller, operation="update_twin", content=jsonl(lines)))
    assert (batch.processed, batch.failed) == (2, 2)
    usage = caller.client.get("/usage").json()["usage"]
    assert totals(usage)["batch_lines"] == 2 and totals(usage)["batch_lines_failed"] == 2


@pytest.mark.django_db
def test_only_hours_of_the_last_seven_days_with_activity(caller):
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    UsageHour.objects.create(account=caller.account, hour=hour - timedelta(days=8), batch_lines=5)
    UsageHour.objects.create(account=caller.account, hour=hour - timedelta(days=2), batch_lines=0)
    UsageHour.objects.create(account=caller.account, hour=hour - timedelta(days=6, hours=23), upload_bytes=7)
    UsageHour.objects.create(account=caller.account, user=caller.account_user.uuid, hour=hour, api_calls=4)
    UsageHour.objects.create(account=caller.account, hour=hour, api_calls=1)
    usage = caller.client.get("/usage").json()["usage"]
    six_days_ago = (hour - timedelta(days=6, hours=23)).astimezone(UTC).strftime("%Y-%m-%d-%H")
    assert list(usage) == [six_days_ago, current_hour()]
    assert usage[six_days_ago]["upload_bytes"] == 7
    assert usage[current_hour()]["api_calls"] == 5
    # 4, and the GET /usage just above.
    mine = caller.client.get(f"/usage/{caller.account_user.uuid}").json()["usage"]
    assert mine[current_hour()]["api_calls"] == 5


@pytest.mark.django_db
def test_api_calls_are_counted_in_memory_and_written_in_one_go(caller):
    with override_settings(USAGE_FLUSH_SECONDS=3600), CaptureQueriesContext(connection) as queries:
        for _ in range(20):
            assert caller.client.get("/whoami").status_code == 200
    assert not [query for query in queries if "operating_usagehour" in query["sql"]]
    with CaptureQueriesContext(connection) as queries:
        usage = caller.client.get("/usage").json()["usage"]
    assert usage[current_hour()]["api_calls"] == 20
    writes = [query for query in queries if query["sql"].startswith('INSERT INTO "operating_usagehour"')]
    assert len(writes) == 1


@pytest.mark.django_db
def test_usage_needs_its_actions(make_caller):
    limited = make_caller(statement={"effect": "deny", "actions": ["get_account_usage", "get_user_usage"]})
    refused = limited.client.get("/usage")
    assert refused.status_code == 403 and refused.json()["subcode"] == "action_not_allowed"
    assert limited.client.get(f"/usage/{limited.account_user.uuid}").status_code == 403


@pytest.mark.django_db
def test_a_chunk_that_rolls_back_counts_nothing(caller):
    """As when a worker dies mid-chunk: the lines run again elsewhere and count there, once."""
    with pytest.raises(RuntimeError), transaction.atomic():
        usage_record_batch_lines(account_id=caller.account.pk, user_id=None, lines=1000, failed=0)
        raise RuntimeError("the worker died")
    assert not UsageHour.objects.filter(account=caller.account).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
def test_a_chunk_commit_never_waits_for_another_accounts_open_one(caller, stranger):
    """A worker frozen inside one account's chunk commit (its counters' rows locked) holds up
    that account only: another account's commit goes through at once."""
    holding, release = threading.Event(), threading.Event()

    def frozen_inside_its_commit():
        try:
            with transaction.atomic():
                usage_record_batch_lines(account_id=caller.account.pk, user_id=None, lines=10, failed=0)
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    frozen = threading.Thread(target=frozen_inside_its_commit)
    frozen.start()
    try:
        assert holding.wait(10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '1s'")
            usage_record_batch_lines(account_id=stranger.account.pk, user_id=None, lines=5, failed=1)
    finally:
        release.set()
        frozen.join(30)
    assert lines_per_minute(hours=1)[-1][1:] == (15, 1)

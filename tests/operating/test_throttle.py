"""API throttling per account on the shared counters: 429 throttled with Retry-After and the
error body; other accounts are not slowed by one account's traffic; parallel calls are admitted
exactly up to the rate."""

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from operating.models import QuotaRefusalHour
from operating.services import usage_flush
from tests.support.parallel_calls import in_parallel

pytestmark = pytest.mark.django_db


@override_settings(API_THROTTLE_RATE="3/min")
def test_an_account_past_its_rate_is_throttled(caller, make_caller, stranger):
    colleague = make_caller(account=caller.account)
    assert [caller.client.get("/whoami").status_code for _ in range(2)] == [200, 200]
    # The window is the account's, not the user's.
    assert colleague.client.get("/whoami").status_code == 200

    refused = caller.client.get("/whoami")
    assert refused.status_code == 429
    body = refused.json()
    assert set(body) == {"subcode", "description", "trace"} and body["subcode"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert colleague.client.get("/batches").status_code == 429

    assert stranger.client.get("/whoami").status_code == 200
    usage_flush(force=True)
    assert QuotaRefusalHour.objects.get(account=caller.account, quota="throttled").count == 2


@override_settings(API_THROTTLE_RATE="")
def test_an_empty_rate_throttles_nothing(caller):
    assert {caller.client.get("/whoami").status_code for _ in range(50)} == {200}


def test_throttled_calls_are_not_counted_as_api_calls(caller):
    with override_settings(API_THROTTLE_RATE="2/min"):
        statuses = [caller.client.get("/whoami").status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    usage = caller.client.get("/usage").json()["usage"]
    assert sum(hour["api_calls"] for hour in usage.values()) == 2


@pytest.mark.django_db(transaction=True)
def test_parallel_calls_are_admitted_exactly_to_the_rate(caller):
    def status_of(n: int) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=caller.secret)
        return client.get("/whoami").status_code

    with override_settings(API_THROTTLE_RATE="60/min"):
        statuses = in_parallel(status_of, 200)
    assert (statuses.count(200), statuses.count(429)) == (60, 140)

"""One try is bounded in all, whatever the receiver does: a receiver trickling its answer a
byte at a time (no read ever waits long) and one that never answers both end at the deadline;
a claim outlasts the try; tries at once are capped per account and per receiver host (a try
over a cap waits a moment, it does not fail)."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import services
from notifications.callbacks import post
from notifications.models import Delivery
from tests.support.inline_pipeline import run_batch
from tests.support.webhooks import confirm, subscribe, three_twins

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("trickle", [True, False], ids=["trickle", "black_hole"])
def test_a_try_ends_at_its_deadline_whatever_the_receiver_does(private_hosts, stalling_receivers, trickle):
    private_hosts.WEBHOOK_TIMEOUT_SECONDS = 1
    # Bytes every 0.3 s: a per-read timeout of 1 s never trips; it stops trickling after 8 s, so
    # a client without a total deadline fails this test in seconds rather than hanging.
    receiver = stalling_receivers(trickle=trickle, interval=0.3, give_up_after=8)
    started = time.monotonic()
    outcome = post(receiver.url, body=b"{}", headers={"Content-Type": "application/json"})
    took = time.monotonic() - started

    assert not outcome.delivered
    assert outcome.error == "no complete answer within 1 s"
    assert took < 3, f"the try took {took:.1f} s for a 1 s deadline"
    time.sleep(0.5)
    [connection] = receiver.connections
    assert connection.closed is not None and connection.closed - connection.opened < 3


def test_a_claim_outlasts_the_whole_try(caller, private_hosts, receivers):
    receiver = receivers()
    subscription, _ = subscribe(caller, receiver)
    before = timezone.now()
    claimed = services.delivery_claim_next(subscription_id=subscription.pk, batch_id=None)
    lease = (claimed.leased_until - before).total_seconds()
    assert lease >= private_hosts.WEBHOOK_TIMEOUT_SECONDS + services.LEASE_MARGIN_SECONDS
    assert services.delivery_claim_next(subscription_id=subscription.pk, batch_id=None) is None


def subscribed(caller, receiver):
    subscription, _ = subscribe(caller, receiver)
    confirm(receiver, subscription)
    return subscription


def test_tries_over_the_account_cap_wait_a_moment_and_then_go(caller, private_hosts, receivers):
    private_hosts.WEBHOOK_MAX_CONCURRENT_PER_ACCOUNT = 1
    private_hosts.WEBHOOK_MAX_CONCURRENT_PER_HOST = 10
    first, second = receivers(), receivers()
    lanes = [subscribed(caller, first), subscribed(caller, second)]
    batch = run_batch(three_twins(caller))

    in_flight = services.delivery_claim_next(subscription_id=lanes[0].pk, batch_id=batch.pk)
    assert in_flight is not None
    now = timezone.now()
    assert services.delivery_claim_next(subscription_id=lanes[1].pk, batch_id=batch.pk) is None
    deferred = Delivery.objects.filter(subscription=lanes[1], batch_id=batch.pk).order_by("pk").first()
    assert deferred.state == "pending" and deferred.attempts == 0 and deferred.leased_until is None
    assert now + timedelta(seconds=0.5) < deferred.next_attempt_at < now + timedelta(seconds=3)

    services.delivery_send(in_flight)
    Delivery.objects.filter(pk=deferred.pk).update(next_attempt_at=timezone.now())
    assert services.delivery_claim_next(subscription_id=lanes[1].pk, batch_id=batch.pk) is not None


def test_tries_over_the_host_cap_wait_whatever_the_account(caller, stranger, private_hosts, receivers):
    private_hosts.WEBHOOK_MAX_CONCURRENT_PER_ACCOUNT = 10
    private_hosts.WEBHOOK_MAX_CONCURRENT_PER_HOST = 1
    ours, theirs = subscribed(caller, receivers()), subscribed(stranger, receivers())
    ours_batch, theirs_batch = run_batch(three_twins(caller)), run_batch(three_twins(stranger))
    assert services.delivery_claim_next(subscription_id=ours.pk, batch_id=ours_batch.pk) is not None
    assert services.delivery_claim_next(subscription_id=theirs.pk, batch_id=theirs_batch.pk) is None
    assert Delivery.objects.filter(subscription=theirs, state="pending").first().attempts == 0

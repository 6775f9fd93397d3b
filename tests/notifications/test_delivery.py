"""Delivery in process against a real HTTP receiver on 127.0.0.1: the confirmation first,
then every event of real (in-process) pipeline runs, signed, in order per batch; retries
under the same event_id; the window closing; redirects; address checks at delivery time;
ended subscriptions; the outbox's cost and atomicity; the admin and the batch page."""

import itertools
import threading
import time
from datetime import timedelta
from http.server import HTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings
from django.db import connection, transaction
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from batches.models import BatchStatus
from batches.states import batch_transition
from batchsite.celery import app as celery_app
from notifications import services
from notifications.callbacks import checked_session
from notifications.models import Delivery, DeliveryAttempt, Event, Subscription
from notifications.outbox import WEBHOOK_DELIVER_TASK
from notifications.tasks import webhook_deliver
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import run_batch, stop_after_first_chunk
from tests.support.metric_samples import samples, value
from tests.support.webhooks import confirm, deliver, subscribe, three_twins

S = BatchStatus
pytestmark = pytest.mark.django_db


def test_confirmation_first_then_every_batch_event_signed_and_in_order(caller, private_hosts, receivers):
    receiver = receivers()
    subscription, server_secret = subscribe(caller, receiver, client_secret="shared-with-the-receiver")
    before = run_batch(three_twins(caller))
    assert before.status == S.COMPLETED
    assert not Event.objects.filter(batch_id=before.pk).exists(), "nothing but the confirmation before it"

    confirm(receiver, subscription)
    [confirmation] = receiver.received
    assert set(confirmation.body) == {"type", "topic", "account", "confirmation_url"}
    assert confirmation.body["type"] == "subscription_confirmation"
    assert confirmation.body["account"] == str(caller.account.pk)
    assert confirmation.signature_valid(server_secret)

    with override_settings(BATCH_CHUNK_LINES=2):
        completed = run_batch(three_twins(caller))
        mismatch = run_batch(BatchFactory(caller=caller, content=jsonl([{}]), hash="0" * 64))
        invalid = run_batch(BatchFactory(caller=caller, content=b'{"description": 1}\n'))
        cancelled = stop_after_first_chunk(
            BatchFactory(
                caller=caller,
                content=jsonl({"description": {"n": n}} for n in range(6)),
            )
        )
    expected = {
        completed.pk: ["batch_processing", "batch_completed"],
        mismatch.pk: ["batch_hash_mismatch"],
        invalid.pk: ["batch_validation_failed"],
        cancelled.pk: ["batch_processing", "batch_cancelled"],
    }
    for batch_id in expected:
        assert services.lane_deliver(subscription_id=subscription.pk, batch_id=batch_id) is None

    events = receiver.received[1:]
    for batch_id, names in expected.items():
        assert [got.body["event"] for got in events if got.body["batch"]["batch"] == str(batch_id)] == names
    assert len({got.body["event_id"] for got in events}) == len(events) == 6
    for got in events:
        assert got.signature_valid(server_secret)
        assert got.headers["X-Webhook-Id"] == got.body["event_id"]
        assert got.headers["X-Webhook-Timestamp"].isdigit()
        assert got.headers["X-Client-Secret"] == "shared-with-the-receiver"
        assert got.headers["Content-Type"] == "application/json"
        assert set(got.body) == {"type", "event", "event_id", "topic", "account", "ts", "batch"}
        assert (got.body["type"], got.body["topic"], got.body["account"]) == (
            "event",
            "batches",
            str(caller.account.pk),
        )
        assert isinstance(got.body["ts"], float)
    processing, done = (got.body["batch"] for got in events[:2])
    assert processing["status"] == "processing" and processing["progress"]["total"] == 3
    assert done == caller.client.get(f"/batches/{completed.pk}").json()
    assert Delivery.objects.filter(state="delivered").count() == 7


def test_a_failing_receiver_gets_the_event_again_with_the_same_id_and_later_events_wait(
    caller, private_hosts, receivers
):
    failures = [500, 500, 500]
    receiver = receivers(
        answer=lambda got: (failures.pop(), {}) if failures and got.body["type"] == "event" else (200, {})
    )
    subscription, server_secret = subscribe(caller, receiver)
    confirm(receiver, subscription)
    batch = run_batch(three_twins(caller))

    waiting = deliver(subscription, batch)
    assert waiting.state == "pending" and waiting.next_attempt_at is not None
    assert deliver(subscription, batch) is not None  # not due yet: nothing is sent
    assert [got.body["event"] for got in receiver.events()] == ["batch_processing"]
    deadline = time.monotonic() + 10
    while deliver(subscription, batch) is not None:
        assert time.monotonic() < deadline, "the retries never got through"
        time.sleep(0.05)

    names = [(got.body["event"], got.body["event_id"]) for got in receiver.events()]
    assert [name for name, _ in names] == ["batch_processing"] * 4 + ["batch_completed"]
    assert len({event_id for name, event_id in names if name == "batch_processing"}) == 1
    assert all(got.signature_valid(server_secret) for got in receiver.received)
    first = Delivery.objects.get(event__name="batch_processing")
    attempts = list(first.attempt_log.all())
    assert [attempt.status_code for attempt in attempts] == [500, 500, 500, 200]
    assert all(attempt.next_attempt_at for attempt in attempts[:3]) and attempts[3].next_attempt_at is None
    assert all(attempt.latency_ms is not None for attempt in attempts)
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.1 and gaps[2] >= 0.3, gaps


def test_after_the_retry_window_an_event_fails_for_good_and_the_next_one_goes(
    caller, private_hosts, receivers
):
    private_hosts.WEBHOOK_RETRY_FOR_SECONDS = 0.5
    receiver = receivers(answer=lambda got: (503 if got.body.get("event") == "batch_processing" else 200, {}))
    subscription, _ = subscribe(caller, receiver)
    confirm(receiver, subscription)
    batch = run_batch(three_twins(caller))
    deadline = time.monotonic() + 10
    while deliver(subscription, batch) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert Delivery.objects.get(event__name="batch_processing").state == "failed"
    assert Delivery.objects.get(event__name="batch_completed").state == "delivered"
    assert [got.body["event"] for got in receiver.events()][-1] == "batch_completed"


def test_a_redirect_is_not_followed(caller, private_hosts, receivers):
    target = receivers()
    redirecting = receivers(answer=lambda got: (302, {"Location": target.url}))
    subscription, _ = subscribe(caller, redirecting)
    waiting = services.lane_deliver(subscription_id=subscription.pk, batch_id=None)
    assert waiting.state == "pending"
    assert len(redirecting.received) == 1 and target.received == []
    assert waiting.attempt_log.get().status_code == 302


def test_the_address_is_checked_again_when_sending(caller, private_hosts, receivers):
    receiver = receivers()
    subscription, _ = subscribe(caller, receiver)
    private_hosts.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    waiting = services.lane_deliver(subscription_id=subscription.pk, batch_id=None)
    assert receiver.received == []
    assert waiting.attempt_log.get().error.startswith("callback_url_not_allowed")
    # The connection itself refuses it too, whatever a name resolved to a moment before.
    with pytest.raises(requests.ConnectionError, match="loopback"), checked_session() as session:
        session.post(receiver.url, data=b"{}", timeout=5)
    assert receiver.received == []


def test_unsubscribed_or_expired_subscriptions_get_nothing(caller, private_hosts, receivers):
    receiver = receivers()
    subscription, _ = subscribe(caller, receiver)
    confirm(receiver, subscription)
    batch = run_batch(three_twins(caller))
    # Its validity over, as if the time had passed.
    Subscription.objects.filter(pk=subscription.pk).update(validity_at="2000-01-01T00:00:00Z")
    assert deliver(subscription, batch) is None
    assert set(Delivery.objects.filter(batch_id=batch.pk).values_list("state", flat=True)) == {"dropped"}
    assert run_batch(three_twins(caller)) and Event.objects.filter(name="batch_completed").count() == 1

    services.subscription_refresh(subscription=subscription)
    batch = run_batch(three_twins(caller))
    APIClient().delete(
        urlsplit(services.subscription_url(subscription)).path
        + "?"
        + urlsplit(services.subscription_url(subscription)).query
    )
    assert deliver(subscription, batch) is None
    assert receiver.events() == []


def test_the_outbox_costs_one_query_without_subscribers_and_commits_with_the_transition(caller):
    first, second = (BatchFactory(caller=caller, content=b"{}\n") for _ in range(2))
    batch_transition(batch_id=second.pk, to=S.COPYING)
    with CaptureQueriesContext(connection) as plain:
        batch_transition(batch_id=first.pk, to=S.COPYING)
    with CaptureQueriesContext(connection) as event:
        batch_transition(batch_id=second.pk, to=S.HASH_MISMATCH)
    assert len(event) == len(plain) + 1


def test_an_event_exists_only_if_its_transition_committed(caller, private_hosts, receivers):
    subscription, _ = subscribe(caller, receivers())
    services.subscription_confirm(subscription=subscription)
    batch = BatchFactory(caller=caller, content=b"{}\n")
    batch_transition(batch_id=batch.pk, to=S.COPYING)
    with pytest.raises(RuntimeError), transaction.atomic():
        batch_transition(batch_id=batch.pk, to=S.HASH_MISMATCH)
        assert Event.objects.filter(batch_id=batch.pk).count() == 1
        raise RuntimeError("the process dies before the commit")
    assert not Event.objects.filter(batch_id=batch.pk).exists()
    batch_transition(batch_id=batch.pk, to=S.HASH_MISMATCH)
    assert Event.objects.get(batch_id=batch.pk).name == "batch_hash_mismatch"


def test_admin_shows_attempts_and_redelivers_and_the_batch_page_lists_deliveries(
    caller, private_hosts, receivers, admin_client
):
    receiver = receivers()
    subscription, _ = subscribe(caller, receiver)
    confirm(receiver, subscription)
    batch = run_batch(three_twins(caller))
    assert deliver(subscription, batch) is None
    completed = Delivery.objects.get(event__name="batch_completed")

    page = admin_client.get(reverse("admin:notifications_delivery_change", args=[completed.pk]))
    assert page.status_code == 200
    assert b"200" in page.content and b"latency" in page.content.lower()
    assert str(completed.event.event_id).encode() in page.content
    for name in ("subscription", "event", "delivery"):
        assert admin_client.get(reverse(f"admin:notifications_{name}_changelist")).status_code == 200
    assert (
        admin_client.get(reverse("admin:notifications_event_change", args=[completed.event_id])).status_code
        == 200
    )
    assert server_secret_hidden(admin_client, subscription)

    response = admin_client.post(
        reverse("admin:notifications_delivery_changelist"),
        {"action": "redeliver", "_selected_action": [completed.pk]},
        follow=True,
    )
    assert b"1 queued again" in response.content
    assert deliver(subscription, batch) is None
    again = [got.body for got in receiver.events() if got.body["event"] == "batch_completed"]
    assert len(again) == 2 and again[0]["event_id"] == again[1]["event_id"]
    assert DeliveryAttempt.objects.filter(delivery=completed).count() == 2

    client = Client()
    client.force_login(caller.user)
    detail = client.get(reverse("batch_page", args=[batch.pk]))
    assert detail.status_code == 200
    assert [delivery.event.name for delivery in detail.context["deliveries"]] == [
        "batch_processing",
        "batch_completed",
    ]
    assert str(completed.event.event_id).encode() in detail.content


def server_secret_hidden(admin_client, subscription) -> bool:
    page = admin_client.get(reverse("admin:notifications_subscription_change", args=[subscription.pk]))
    return page.status_code == 200 and subscription.server_secret.encode() not in page.content


def readme_receiver(server_secret: str):
    """The receiver the docs show, run as written on 127.0.0.1."""
    docs = (Path(settings.BASE_DIR) / "docs" / "api-and-compatibility.md").read_text()
    code = docs.split("## Notifications", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('SERVER_SECRET = "..."', f"SERVER_SECRET = {server_secret!r}")
    code = code.replace('HTTPServer(("0.0.0.0", 8080), Hook).serve_forever()', "")
    namespace = {"__name__": "readme_receiver"}
    exec(compile(code, "api-and-compatibility.md", "exec"), namespace)
    namespace["Hook"].log_message = lambda *args: None
    server = HTTPServer(("127.0.0.1", 0), namespace["Hook"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("right_secret", [True, False])
def test_the_readme_receiver_accepts_signed_events_only(caller, private_hosts, right_secret, capsys):
    server = readme_receiver("not yet known")
    try:
        callback_url = f"http://127.0.0.1:{server.server_port}/hook"
        response = caller.client.post(
            "/notifications/webhooks", {"callback_url": callback_url, "topic": "batches"}, format="json"
        )
        subscription = Subscription.objects.get()
        secret = response.json()["server_secret"] if right_secret else "0" * 64
        server.RequestHandlerClass.do_POST.__globals__["SERVER_SECRET"] = secret
        url = urlsplit(services.subscription_url(subscription))
        assert APIClient().get(f"{url.path}?{url.query}").status_code == 200
        batch = run_batch(three_twins(caller))
        waiting = deliver(subscription, batch)
    finally:
        server.shutdown()
        server.server_close()
    if right_secret:
        assert waiting is None
        assert "batch_completed" in capsys.readouterr().out
    else:
        assert waiting.attempt_log.get().status_code == 401


def test_the_sweep_finds_each_stranded_lane_once_and_leaves_fresh_or_claimed_ones(
    caller, private_hosts, receivers
):
    receiver = receivers()
    subscription, _ = subscribe(caller, receiver)
    confirm(receiver, subscription)
    batch = run_batch(three_twins(caller))
    later = timezone.now() + timedelta(seconds=5)
    assert services.lanes_due(now=later, grace_seconds=1) == [(subscription.pk, batch.pk)]
    assert services.lanes_due(now=timezone.now(), grace_seconds=60) == [], "fresh: its own task sends it"
    Delivery.objects.filter(batch_id=batch.pk).update(leased_until=later + timedelta(seconds=1))
    assert services.lanes_due(now=later, grace_seconds=1) == [], "claimed by a live sender"
    assert services.lanes_due(now=later + timedelta(seconds=2), grace_seconds=1) == [
        (subscription.pk, batch.pk)
    ], "the sender's claim lapsed"


def test_the_outbox_names_the_delivery_task_the_workers_register():
    assert webhook_deliver.name == WEBHOOK_DELIVER_TASK
    assert celery_app.tasks[WEBHOOK_DELIVER_TASK].name == WEBHOOK_DELIVER_TASK


def test_metrics_count_each_try_by_outcome(caller, private_hosts, receivers, client):
    private_hosts.WEBHOOK_RETRY_FOR_SECONDS = 0.5
    receiver = receivers(answer=lambda got: (503 if got.body.get("event") == "batch_processing" else 200, {}))
    subscription, _ = subscribe(caller, receiver)
    before = samples(client.get("/metrics").content.decode())
    confirm(receiver, subscription)
    batch = run_batch(three_twins(caller))
    deadline = time.monotonic() + 10
    while deliver(subscription, batch) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    after = samples(client.get("/metrics").content.decode())

    def counted(outcome: str) -> float:
        name = "webhook_deliveries_total"
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    tries = list(DeliveryAttempt.objects.filter(delivery__subscription=subscription))
    assert counted("delivered") == sum(attempt.status_code == 200 for attempt in tries) == 2
    assert counted("failed") == 1
    assert counted("retrying") == len(tries) - 3 >= 1

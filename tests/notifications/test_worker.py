"""Webhooks end to end on real Celery worker processes (with their embedded beat): a
receiver on 127.0.0.1 confirms its subscription through the live server and gets every event
of real batches, signed, in order, each once; a receiver that fails gets the same event
later; a process killed right after a transition committed still has its event delivered
(by beat's sweep); after unsubscribing nothing arrives."""

import signal
import subprocess
import sys
import time

import pytest
import requests
from django.conf import settings as django_settings

from batches.models import Batch, BatchStatus
from batchsite.celery import app as celery_app
from notifications import services
from notifications.models import Delivery, Event, Subscription
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.waiting import wait_for, wait_terminal
from tests.support.worker_processes import WorkerProcess

S = BatchStatus
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_HOSTS": "true",
    "WEBHOOK_RETRY_FIRST_DELAY_SECONDS": "0.3",
    "WEBHOOK_RETRY_MAX_DELAY_SECONDS": "1",
    "WEBHOOK_SWEEP_INTERVAL_SECONDS": "1",
}


@pytest.fixture
def worker_factory():
    celery_app.control.purge()
    started = []

    def start(log_name: str) -> WorkerProcess:
        worker = WorkerProcess(extra_env=WORKER_ENV, log_name=log_name).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.discard()


@pytest.fixture
def allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    return settings


def subscribe_through(live_server, caller, receiver) -> tuple[Subscription, str]:
    response = requests.post(
        f"{live_server.url}/notifications/webhooks",
        headers={"Authorization": caller.secret},
        json={"callback_url": receiver.url, "topic": "batches"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return Subscription.objects.get(callback_url=receiver.url), response.json()["server_secret"]


def confirmed(subscription, receiver, worker) -> None:
    """The row says confirmed and the receiver has its answer: the server commits the row
    before its response reaches the receiver, so the row alone comes first."""

    def done():
        confirmed_rows = Subscription.objects.filter(pk=subscription.pk, confirmed_at__isnull=False)
        return bool(receiver.confirmations) and confirmed_rows.exists()

    try:
        wait_for(done, timeout=60, what="the receiver to confirm")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{worker.log()}") from None


def three_twins(caller):
    return BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(3)))


def events_of(receiver, batch) -> list:
    return [got for got in receiver.events() if got.body["batch"]["batch"] == str(batch.pk)]


def test_every_event_arrives_signed_in_order_once_and_nothing_after_unsubscribe(
    caller, live_server, allowed, receivers, worker_factory
):
    worker = worker_factory("worker-webhooks")
    receiver = receivers(confirm=True)
    subscription, server_secret = subscribe_through(live_server, caller, receiver)
    confirmed(subscription, receiver, worker)
    assert receiver.confirmations == [200]
    assert [got.body["type"] for got in receiver.received] == ["subscription_confirmation"]

    batch = wait_terminal(three_twins(caller), timeout=60, worker=worker)
    assert batch.status == S.COMPLETED
    wait_for(lambda: len(events_of(receiver, batch)) >= 2, timeout=30, what="the batch's events")
    time.sleep(2.5)  # two sweeps: nothing is sent twice when nothing failed
    events = events_of(receiver, batch)
    assert [got.body["event"] for got in events] == ["batch_processing", "batch_completed"]
    assert len({got.body["event_id"] for got in events}) == 2
    assert all(got.signature_valid(server_secret) for got in events)
    assert events[1].body["batch"]["progress"] == {
        "total": 3,
        "processed": 3,
        "succeeded": 3,
        "failed": 0,
        "rate_lps": None,
        "eta_ts": None,
    }

    ended = requests.delete(services.subscription_url(subscription), timeout=10)
    assert ended.status_code == 201, ended.text
    before = len(receiver.received)
    later = wait_terminal(three_twins(caller), timeout=60, worker=worker)
    assert later.status == S.COMPLETED
    time.sleep(2.5)
    assert len(receiver.received) == before
    assert not Event.objects.filter(batch_id=later.pk).exists()


def test_a_receiver_failing_three_times_gets_the_event_later_with_the_same_id(
    caller, live_server, allowed, receivers, worker_factory
):
    worker = worker_factory("worker-webhooks-retry")
    failures = [500, 500, 500]

    def answer(got):
        if got.body["type"] == "event" and failures:
            return failures.pop(), {}
        return 200, {}

    receiver = receivers(confirm=True, answer=answer)
    subscription, server_secret = subscribe_through(live_server, caller, receiver)
    confirmed(subscription, receiver, worker)
    batch = wait_terminal(three_twins(caller), timeout=60, worker=worker)
    wait_for(
        lambda: [got.body["event"] for got in events_of(receiver, batch)][-1:] == ["batch_completed"],
        timeout=60,
        what="the last event after the retries",
    )
    events = events_of(receiver, batch)
    assert [got.body["event"] for got in events] == ["batch_processing"] * 4 + ["batch_completed"]
    assert len({got.body["event_id"] for got in events[:4]}) == 1
    assert all(got.signature_valid(server_secret) for got in events)
    first = Delivery.objects.get(subscription=subscription, event__name="batch_processing")
    assert [attempt.status_code for attempt in first.attempt_log.all()] == [500, 500, 500, 200]


KILLED_AFTER_COMMIT = """
import os, signal, sys
import django
django.setup()
from django.db import transaction
from batches.states import batch_transition

batch_id = sys.argv[1]
batch_transition(batch_id=batch_id, to="copying")
with transaction.atomic():
    # Registered first, so it runs first once the transition has committed: the process
    # dies before the outbox's own after-commit step can queue the delivery.
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    batch_transition(batch_id=batch_id, to="hash_mismatch", failure_reason="killed test")
print("survived")
"""


def test_a_process_killed_right_after_a_transition_still_gets_its_event_out(
    caller, allowed, receivers, worker_factory
):
    receiver = receivers()
    subscription = services.subscription_create(
        account=caller.account,
        created_by=caller.account_user,
        callback_url=receiver.url,
        topic="batches",
        base_url="http://127.0.0.1/",
    )
    services.subscription_confirm(subscription=subscription)
    batch = BatchFactory(caller=caller, content=b"{}\n")
    celery_app.control.purge()  # no worker runs this batch: the killed process moves it

    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_COMMIT, str(batch.pk)],
        env={**WorkerProcess(extra_env=WORKER_ENV).env, "DJANGO_SETTINGS_MODULE": "batchsite.settings"},
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert Batch.objects.get(pk=batch.pk).status == S.HASH_MISMATCH
    delivery = Delivery.objects.get(subscription=subscription, batch_id=batch.pk)
    assert delivery.state == "pending" and delivery.attempts == 0

    worker = worker_factory("worker-webhooks-sweep")
    try:
        wait_for(lambda: events_of(receiver, batch), timeout=60, what="the event through the sweep")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{worker.log()}") from None
    assert [got.body["event"] for got in events_of(receiver, batch)] == ["batch_hash_mismatch"]


@pytest.mark.soak
def test_a_worker_killed_right_after_a_transition_still_gets_every_event_out(
    caller, allowed, receivers, worker_factory
):
    """The same on a real worker: SIGKILLed the moment its batch reaches processing; a
    second worker resumes the batch, and the events arrive, in order, the first possibly twice
    (at least once) but always under one event_id."""
    receiver = receivers()
    subscription = services.subscription_create(
        account=caller.account,
        created_by=caller.account_user,
        callback_url=receiver.url,
        topic="batches",
        base_url="http://127.0.0.1/",
    )
    services.subscription_confirm(subscription=subscription)
    batch = BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(5000)))
    first = worker_factory("worker-webhooks-killed")
    wait_for(
        lambda: Batch.objects.get(pk=batch.pk).history.filter(to_status=S.PROCESSING).exists(),
        timeout=120,
        interval=0.01,
        what="the batch to reach processing",
    )
    first.kill()

    second = worker_factory("worker-webhooks-after-kill")
    assert wait_terminal(batch, timeout=180, worker=second).status == S.COMPLETED
    wait_for(
        lambda: [got.body["event"] for got in events_of(receiver, batch)][-1:] == ["batch_completed"],
        timeout=60,
        what="batch_completed",
    )
    events = events_of(receiver, batch)
    names = [got.body["event"] for got in events]
    assert names[-1] == "batch_completed" and set(names[:-1]) == {"batch_processing"}, names
    assert len({got.body["event_id"] for got in events[:-1]}) == 1

"""One account's bad receivers never hold up another account's batch, on real Celery worker
processes laid out as in production: a pipeline worker (`pipeline,chunks`) and a webhooks pool
(`webhooks`). Account A subscribes receivers that trickle their answer a byte at a time and
receivers that accept and never answer; account B's one-line batch still completes at once,
each of A's tries ends at its deadline, A never has more tries at once than its cap, and no
delivery (an event for one subscription) is ever being sent over two connections at once."""

import signal
import time
from datetime import timedelta

import pytest

from batches.models import BatchStatus
from batchsite.celery import app as celery_app
from notifications import services
from notifications.models import DeliveryAttempt
from tests.support.factories import BatchFactory
from tests.support.infrastructure_faults import broker_kind
from tests.support.waiting import wait_for, wait_terminal
from tests.support.worker_processes import WorkerProcess

# Deliveries hold no broker connection while they try: the Redis pass stands for RabbitMQ's.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(broker_kind() == "amqp", reason="runs once per database, on Redis"),
]
TIMEOUT_SECONDS = 2
MAX_CONCURRENT_PER_ACCOUNT = 2
WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_HOSTS": "true",
    "WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    "WEBHOOK_RETRY_FIRST_DELAY_SECONDS": "0.2",
    "WEBHOOK_RETRY_MAX_DELAY_SECONDS": "0.5",
    "WEBHOOK_SWEEP_INTERVAL_SECONDS": "1",
    "WEBHOOK_MAX_CONCURRENT_PER_ACCOUNT": str(MAX_CONCURRENT_PER_ACCOUNT),
    "WEBHOOK_MAX_CONCURRENT_PER_HOST": "3",
}
# A one-line batch takes a few seconds on an idle pipeline worker, well under this even on a
# loaded machine; before webhooks had their own pool and deadline, a trickling receiver held
# every pipeline process for as long as it trickled (minutes), so B's batch stayed `new`.
FAIRNESS_BOUND_SECONDS = 30


@pytest.fixture
def workers():
    celery_app.control.purge()
    started = []

    def start(**options) -> WorkerProcess:
        worker = WorkerProcess(extra_env=WORKER_ENV, **options).start()
        started.append(worker)
        return worker

    yield start
    # Both warm shutdowns at once: each waits for its tries in flight.
    for worker in started:
        worker.process.send_signal(signal.SIGTERM)
    for worker in started:
        worker.stop()


def subscribe_confirmed(caller, url: str) -> None:
    subscription = services.subscription_create(
        account=caller.account,
        created_by=caller.account_user,
        callback_url=url,
        topic="batches",
        base_url="http://127.0.0.1/",
    )
    services.subscription_confirm(subscription=subscription)


def test_trickling_and_silent_receivers_of_one_account_never_delay_another_accounts_batch(
    caller, stranger, settings, stalling_receivers, workers
):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    trickling = stalling_receivers(trickle=True, interval=0.5, give_up_after=120)
    silent = stalling_receivers(trickle=False, give_up_after=120)
    for n in range(4):
        subscribe_confirmed(caller, f"{trickling.url}?n={n}")
        subscribe_confirmed(caller, f"{silent.url}?n={n}")

    pipeline = workers(queues="pipeline,chunks", node_name="pipeline@%h", log_name="worker-fair-pipeline")
    webhooks = workers(
        queues="webhooks", concurrency=4, node_name="webhooks@%h", log_name="worker-fair-webhooks"
    )
    BatchFactory(caller=caller, content=b"{}\n")
    wait_for(
        lambda: len(trickling.connections) + len(silent.connections) >= 2,
        timeout=60,
        what=f"A's receivers to be tried\n{webhooks.log()}",
    )

    started = time.monotonic()
    theirs = BatchFactory(caller=stranger, content=b"{}\n")
    finished = wait_terminal(theirs, timeout=FAIRNESS_BOUND_SECONDS, worker=pipeline)
    assert finished.status == BatchStatus.COMPLETED, f"B's batch took {time.monotonic() - started:.1f} s"

    # A's receivers keep being tried meanwhile, never more than the cap at once.
    of_a = DeliveryAttempt.objects.filter(delivery__subscription__account=caller.account)
    wait_for(lambda: of_a.count() > MAX_CONCURRENT_PER_ACCOUNT * 2, timeout=60, what="more tries of A's")
    connections = trickling.connections + silent.connections
    ended = [connection for connection in connections if connection.closed is not None]
    assert ended and all(c.closed - c.opened < TIMEOUT_SECONDS + 2 for c in ended), [
        round(c.closed - c.opened, 1) for c in ended
    ]
    # Every try is recorded with its start and length, a try that lost its claim included.
    tries = list(of_a)
    assert most_at_once(tries) <= MAX_CONCURRENT_PER_ACCOUNT
    by_delivery: dict[int, list] = {}
    for attempt in tries:
        by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
    assert all(most_at_once(same) == 1 for same in by_delivery.values()), "a delivery tried twice at once"


def most_at_once(attempts) -> int:
    spans = [(attempt.at, attempt.at + timedelta(milliseconds=attempt.latency_ms)) for attempt in attempts]
    return max(sum(1 for start, end in spans if start <= at < end) for at, _ in spans)

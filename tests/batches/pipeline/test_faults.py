"""Exactly once under broker and database faults, on PostgreSQL with real worker processes.

Each run submits one batch and, while a given step is under way, does to the deployment what an
operator's bad day does: drops every broker connection (the broker redelivers the unacked step
while its worker still runs it), SIGKILLs every worker (a fresh one takes over once the dead
one's lease expires), or cancels statements and terminates database connections under the
chunk workers. Every run must end `completed` with every line run exactly once: one twin per
line, one result line per input line, no 500. The workers read and write storage slowly
(tests.support.slow_storage_settings) so that each step lasts long enough to be hit.

A mixed batch of devices (docs/contract.md, section 16) goes through the same processing faults:
each device's identity and entry refer to its twin, and laid out by kind, the chunks of
identities and entries wait on the chunks of twins across the fault.

FAULT_LINES sets the batch size (`make soak` runs a larger one).
"""

import os
import re
import time

import pytest
from django.db import connection

from batches.models import Batch, BatchStatus, Chunk
from batchsite.celery import app as celery_app
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.infrastructure_faults import (
    broker_kind,
    drop_broker_connections,
    once_per_database,
    other_backends,
)
from tests.support.inline_pipeline import read_results
from tests.support.mixed_files import assert_devices_whole, by_kind, device_lines
from tests.support.waiting import wait_for, wait_terminal
from tests.support.worker_processes import WorkerGroup, WorkerProcess
from twins.models import Twin

S = BatchStatus
LINES = int(os.environ.get("FAULT_LINES", "12000"))
PAD = "p" * 200
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the fault suite runs on PostgreSQL"),
]
SLOW_WORKER_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.support.slow_storage_settings",
    "SLOW_STORAGE_BYTES_PER_SECOND": "2000000",
    "BATCH_CHUNK_LINES": "500",
}


# The same batch validated a chunk at a time by the chunk workers (batches.pipeline.validating).
PARALLEL_VALIDATION_ENV = {**SLOW_WORKER_ENV, "BATCH_VALIDATE_PARALLEL_MIN_LINES": "1000"}


class Deployment(WorkerGroup):
    """Two worker processes, and whatever replaces them."""

    def __init__(self, name: str, env: dict):
        super().__init__()
        self.name = name
        self.env = env
        celery_app.control.purge()

    def start_worker(self) -> WorkerProcess:
        index = len(self.workers)
        return self.start(
            extra_env=self.env, log_name=f"{self.name}-{index}", node_name=f"{self.name}-{index}@%h"
        )

    def kill_all(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.kill()


@pytest.fixture
def deployment(request):
    validation = request.node.callspec.params.get("validation", "one_pass")
    env = PARALLEL_VALIDATION_ENV if validation == "parallel" else SLOW_WORKER_ENV
    running = Deployment(
        re.sub(r"\W+", "-", f"{request.node.originalname[5:30]}-{request.node.callspec.id}"), env
    )
    running.start_worker()
    running.start_worker()
    yield running
    running.discard()


def submit(caller) -> Batch:
    return BatchFactory(
        caller=caller,
        content=jsonl({"description": {"serial": n, "pad": PAD}} for n in range(LINES)),
    )


def wait_status(batch: Batch, status: str, deployment: Deployment, *, processed_at_least: int = 0) -> None:
    """Until the batch is in `status` with some work done: lines processed, or, validating in
    parallel, a chunk checked."""
    parallel = deployment.env is PARALLEL_VALIDATION_ENV and status == S.VALIDATING

    def reached():
        current = Batch.objects.get(pk=batch.pk)
        if current.status in (S.COMPLETED, S.VALIDATION_FAILED, S.CANCELLED):
            raise AssertionError(f"the batch ended ({current.status}) before the fault\n{deployment.log()}")
        if parallel and not Chunk.objects.filter(batch_id=batch.pk, validated=True).exists():
            return False
        return current.status == status and current.processed >= processed_at_least

    wait_for(reached, timeout=120, interval=0.02, what=f"status {status}")


def assert_every_line_ran_once(batch: Batch, caller, deployment: Deployment) -> None:
    fault_at = time.monotonic()
    batch = wait_terminal(batch, timeout=240, worker=deployment.workers[-1])
    print(f"{deployment.name}: completed {time.monotonic() - fault_at:.1f} s after the fault")
    assert batch.status == S.COMPLETED, deployment.log()
    assert batch.processed == batch.total == LINES
    results = read_results(batch.results_file)
    failed_lines = [result for result in results if result["status"] != 201][:5]
    assert (batch.succeeded, batch.failed) == (LINES, 0), (failed_lines, deployment.log())
    serials = list(Twin.objects.filter(account=caller.account).values_list("description__serial", flat=True))
    assert len(serials) == LINES, "a line ran twice or not at all"
    assert set(serials) == set(range(LINES))
    assert [result["line"] for result in results] == list(range(1, LINES + 1))
    assert {result["status"] for result in results} == {201}


FAULT_STEPS = [
    pytest.param(S.COPYING, "one_pass", id="copying"),
    pytest.param(S.VALIDATING, "one_pass", id="validating"),
    pytest.param(S.VALIDATING, "parallel", id="validating-chunks"),
    pytest.param(S.PROCESSING, "one_pass", id="processing"),
]


@pytest.mark.parametrize(("status", "validation"), FAULT_STEPS)
def test_broker_connections_dropped_while_a_step_runs(caller, deployment, status, validation):
    if broker_kind() not in ("redis", "amqp"):
        pytest.skip("needs a broker with connections to drop")
    batch = submit(caller)
    wait_status(batch, status, deployment, processed_at_least=1 if status == S.PROCESSING else 0)
    assert drop_broker_connections() > 0
    time.sleep(0.5)
    drop_broker_connections()
    assert_every_line_ran_once(batch, caller, deployment)


@pytest.mark.parametrize(
    ("status", "validation"),
    [*FAULT_STEPS, pytest.param(S.WRITING_RESULTS, "one_pass", id="writing_results")],
)
def test_every_worker_killed_while_a_step_runs(caller, deployment, status, validation):
    if broker_kind() == "amqp":
        pytest.skip("the kill cases run once, on Redis")
    batch = submit(caller)
    wait_status(batch, status, deployment, processed_at_least=1 if status == S.PROCESSING else 0)
    deployment.kill_all()
    deployment.start_worker()
    assert_every_line_ran_once(batch, caller, deployment)


@pytest.mark.parametrize("function", ["pg_cancel_backend", "pg_terminate_backend"])
def test_database_sessions_cancelled_or_terminated_during_processing(caller, deployment, function):
    if broker_kind() == "amqp":
        pytest.skip("the database cases run once, on Redis")
    batch = submit(caller)
    wait_status(batch, S.PROCESSING, deployment, processed_at_least=1)
    reached = 0
    for _ in range(6):
        reached += other_backends(function)
        time.sleep(0.3)
    assert reached > 0
    assert_every_line_ran_once(batch, caller, deployment)


def broker_connections_dropped(deployment: Deployment) -> None:
    assert drop_broker_connections() > 0
    time.sleep(0.5)
    drop_broker_connections()


def every_worker_killed(deployment: Deployment) -> None:
    deployment.kill_all()
    deployment.start_worker()


def database_sessions_terminated(deployment: Deployment) -> None:
    reached = 0
    for _ in range(6):
        reached += other_backends("pg_terminate_backend")
        time.sleep(0.3)
    assert reached > 0


# A fault of the broker and of the workers, each with chunks waiting on others across it (by
# kind); in `make soak` also the killed workers with the usual layout (interleaved, no chunk
# waits) and the database sessions terminated, which CI's time leaves out.
@pytest.mark.parametrize(
    ("fault", "layout"),
    [
        pytest.param(
            broker_connections_dropped,
            "by_kind",
            id="broker_dropped-by_kind",
            marks=pytest.mark.skipif(
                broker_kind() not in ("redis", "amqp"), reason="needs a broker with connections to drop"
            ),
        ),
        pytest.param(every_worker_killed, "by_kind", id="workers_killed-by_kind", marks=once_per_database()),
        pytest.param(
            every_worker_killed,
            "interleaved",
            id="workers_killed-interleaved",
            marks=[once_per_database(), pytest.mark.soak],
        ),
        # A cancelled statement fails a mixed chunk as it fails any chunk (the case above).
        pytest.param(
            database_sessions_terminated,
            "by_kind",
            id="sessions_terminated-by_kind",
            marks=[once_per_database(), pytest.mark.soak],
        ),
    ],
)
def test_a_mixed_batch_runs_each_line_once_through_a_fault(caller, deployment, fault, layout):
    devices = LINES // 3
    lines = device_lines(devices)
    batch = BatchFactory(
        caller=caller, operation="mixed", content=jsonl(by_kind(lines) if layout == "by_kind" else lines)
    )
    wait_status(batch, S.PROCESSING, deployment, processed_at_least=1)
    waiting = Chunk.objects.filter(batch_id=batch.pk, waits__gt=0).count()
    fault(deployment)
    if layout == "by_kind":
        assert waiting > 0, "no chunk was waiting on another when the fault came"

    fault_at = time.monotonic()
    batch = wait_terminal(batch, timeout=240, worker=deployment.workers[-1])
    print(f"{deployment.name}: completed {time.monotonic() - fault_at:.1f} s after the fault")
    assert batch.status == S.COMPLETED, deployment.log()
    results = read_results(batch.results_file)
    failed_lines = [result for result in results if result["status"] != 201][:5]
    assert (batch.processed, batch.succeeded, batch.failed) == (3 * devices, 3 * devices, 0), (
        failed_lines,
        deployment.log(),
    )
    assert [result["line"] for result in results] == list(range(1, 3 * devices + 1))
    assert {result["status"] for result in results} == {201}
    assert_devices_whole(caller, devices)
    for n in (0, devices // 2, devices - 1):
        twin = Twin.objects.get(account=caller.account, description__serial=n)
        assert caller.client.get(f"/resolve/RFID%23D{n}").json() == {"twins": [str(twin.uuid)]}

"""Workers whose clocks are wrong (libfaketime: one 10 minutes ahead, one 30 s behind) behave
like correct ones, on PostgreSQL with real worker processes.

Each run gives a leased step to a skewed worker whose storage is slow (so the step lasts), starts
a worker skewed the other way, watches the step for longer than a lease (another worker must not
take a live step over), SIGKILLs the holder and times the batch to completion: within the lease
plus 10 s, every line run once, the status history in order, the sweep's age never negative.
The steps before the one under test run in this process, so the holder takes exactly that step.
"""

import re
import time
from pathlib import Path

import pytest
from django.db import connection

from batches.models import Batch, BatchStatus
from batches.pipeline import chunks, driver
from batches.statuses import TERMINAL
from batchsite.celery import app as celery_app
from operating.selectors import pipeline_health
from tests.support.batch_files import jsonl
from tests.support.factories import HAPPY_PATH, BatchFactory
from tests.support.infrastructure_faults import broker_kind
from tests.support.inline_pipeline import InlinePipeline, history, read_results
from tests.support.waiting import wait_for
from tests.support.worker_processes import WorkerProcess
from twins.models import Twin

S = BatchStatus
FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SKEWED_CLOCK_SITE = Path(__file__).with_name("skewed_clock")
LEASE_SECONDS = 3
LINES = 1000
# 2.5 kB lines: a step reads or writes a few MB, tens of seconds on the holder's slow storage.
PAD = "p" * 2500
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's clock is the process's own"),
    pytest.mark.skipif(not FAKETIME_LIBRARY.exists(), reason="needs libfaketime (make test installs it)"),
]
# 128 kB/s: a 64 kB block read and written takes a second, so the holder renews within its lease.
SLOW_STORAGE_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.support.slow_storage_settings",
    "SLOW_STORAGE_BYTES_PER_SECOND": "131072",
}
# The step before each step under test, reached in this process.
RUN_UNTIL = {S.COPYING: S.NEW, S.VALIDATING: S.COPIED, S.WRITING_RESULTS: S.PROCESSED}


def skewed(offset: str) -> dict:
    # Monotonic clocks stay real: Celery and kombu time their loops with them.
    return {
        "LD_PRELOAD": str(FAKETIME_LIBRARY),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": str(SKEWED_CLOCK_SITE),
        "BATCH_LEASE_SECONDS": str(LEASE_SECONDS),
    }


def run_here_until(batch: Batch, status: str) -> None:
    """Runs the batch's steps in this process, one at a time, until it is in `status`."""
    enqueue = InlinePipeline().enqueue
    while (current := Batch.objects.get(pk=batch.pk).status) != status:
        if current == S.PROCESSING:
            while chunks.chunk_claim_and_run(batch.pk):
                pass
        assert driver.batch_step(batch.pk, enqueue), f"the batch stopped in {current}"


class SweepAges:
    """/healthz's sweep age, sampled while the test waits."""

    def __init__(self):
        self.seen = []

    def sample(self) -> None:
        age = pipeline_health()["sweep_age_seconds"]
        if age is not None:
            self.seen.append(age)


def step_held(batch: Batch, step: str, ages: SweepAges) -> str:
    """The lease owner once the batch is in `step` with its lease taken."""

    def held():
        ages.sample()
        current = Batch.objects.get(pk=batch.pk)
        assert current.status in (RUN_UNTIL[step], step), f"the batch passed {step}: {current.status}"
        return current.lease_owner if current.status == step else ""

    return wait_for(held, timeout=60, interval=0.05, what=f"a worker to take {step}")


def watch_the_step(batch: Batch, step: str, owner: str, ages: SweepAges) -> None:
    """Longer than a lease, the step stays with the worker that runs it."""
    until = time.monotonic() + LEASE_SECONDS + 2
    while time.monotonic() < until:
        ages.sample()
        current = Batch.objects.get(pk=batch.pk)
        assert current.status == step, f"{step} ended before the kill: make it slower"
        assert current.lease_owner == owner, f"another worker took {step} over while its owner ran it"
        time.sleep(0.05)


@pytest.fixture
def workers(request):
    celery_app.control.purge()
    started = []

    def start(offset: str, extra_env: dict | None = None) -> WorkerProcess:
        name = re.sub(
            r"\W+", "-", f"{request.node.originalname[5:30]}-{request.node.callspec.id}-{len(started)}"
        )
        worker = WorkerProcess(
            extra_env={**skewed(offset), **(extra_env or {})}, log_name=name, node_name=f"{name}@%h"
        )
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.discard()


def kill_the_holder_and_time_the_recovery(caller, workers, *, holder_offset, other_offset, step):
    if broker_kind() == "amqp":
        pytest.skip("the kill cases run once, on Redis")
    ages = SweepAges()
    batch = BatchFactory(
        caller=caller,
        content=jsonl({"description": {"serial": n, "pad": PAD}} for n in range(LINES)),
    )
    run_here_until(batch, RUN_UNTIL[step])
    holder = workers(holder_offset, SLOW_STORAGE_ENV)
    owner = step_held(batch, step, ages)
    other = workers(other_offset)
    wait_for(lambda: " ready." in other.log(), timeout=60, what="the other worker to start")
    watch_the_step(batch, step, owner, ages)
    holder.kill()
    killed_at = time.monotonic()
    current = Batch.objects.get(pk=batch.pk)
    assert (current.status, current.lease_owner) == (step, owner), "the kill missed the step"

    def finished():
        ages.sample()
        done = Batch.objects.get(pk=batch.pk)
        return done if done.status in TERMINAL else None

    wait_for(finished, timeout=LEASE_SECONDS + 40, interval=0.1, what=f"the batch to finish\n{other.log()}")
    recovered_in = time.monotonic() - killed_at
    print(f"{step}, holder at {holder_offset}: completed {recovered_in:.1f} s after the kill")
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.COMPLETED, other.log()
    assert recovered_in <= LEASE_SECONDS + 10
    assert Twin.objects.filter(account=caller.account).count() == LINES, "a line ran twice or not at all"
    assert [result["line"] for result in read_results(batch.results_file)] == list(range(1, LINES + 1))
    assert history(batch) == HAPPY_PATH
    assert ages.seen, "no sweep ran"
    assert min(ages.seen) >= 0


@pytest.mark.parametrize(
    ("holder_offset", "other_offset", "step"),
    [("+10m", "-30s", S.WRITING_RESULTS), ("-30s", "+10m", S.COPYING)],
)
def test_a_skewed_worker_killed_in_a_step_is_taken_over_in_time(
    caller, workers, holder_offset, other_offset, step
):
    kill_the_holder_and_time_the_recovery(
        caller, workers, holder_offset=holder_offset, other_offset=other_offset, step=step
    )


@pytest.mark.soak
@pytest.mark.parametrize("step", [S.COPYING, S.VALIDATING, S.WRITING_RESULTS])
@pytest.mark.parametrize(("holder_offset", "other_offset"), [("+10m", "-30s"), ("-30s", "+10m")])
def test_every_leased_step_taken_over_in_time_whichever_clock_is_off(
    caller, workers, holder_offset, other_offset, step
):
    kill_the_holder_and_time_the_recovery(
        caller, workers, holder_offset=holder_offset, other_offset=other_offset, step=step
    )

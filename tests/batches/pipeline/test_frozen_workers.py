"""A worker that freezes (SIGSTOP) stalls nothing but itself, on PostgreSQL with real worker
processes. To the database a frozen worker and one cut off by the network are the same: its
sessions keep their transactions and locks open and send nothing.

Frozen while it holds a batch's row lock (a trigger makes its chunk's last statement slow, so
the test can stop it there, then waits for `pg_blocking_pids` to show the other worker waiting
on it): a cancel of that batch answers and lands, the other worker finishes the batch, another
account's batch completes, all within the chunk lease plus 10 s, and once thawed the stale worker
commits nothing. Frozen in the middle of a chunk: the other worker takes the chunk over once its
lease expires and completes the batch within the lease plus 10 s, every line run once.

The CI versions use a 5 s chunk lease and thaw the worker once recovery is seen; the soak
versions use the default 30 s lease and keep the worker frozen for 60 s.
"""

import os
import signal
import threading
import time

import pytest
from django.db import connection

from batches.models import Batch, BatchStatus
from batchsite.celery import app as celery_app
from tests.support.infrastructure_faults import broker_kind
from tests.support.waiting import wait_for
from tests.support.worker_outcomes import assert_ran_once, query_value, reached, submit
from tests.support.worker_processes import WorkerGroup, database_url

S = BatchStatus
FROZEN = "frozen-worker"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks and sessions are PostgreSQL's"),
    pytest.mark.skipif(broker_kind() == "amqp", reason="the freeze cases run once, on Redis"),
]
FREEZES = [
    pytest.param(5, 0, id="ci"),
    pytest.param(30, 60, id="soak-60s", marks=pytest.mark.soak),
]


class FrozenDeployment(WorkerGroup):
    """Worker `frozen` (its database sessions named FROZEN) and worker `live`."""

    def __init__(self, name: str, env: dict):
        super().__init__()
        celery_app.control.purge()
        self.frozen = self.start(
            extra_env={**env, "DATABASE_URL": f"{database_url()}?application_name={FROZEN}"},
            log_name=f"{name}-frozen",
            node_name=f"{name}-frozen@%h",
        )
        self.live = self.start(extra_env=env, log_name=f"{name}-live", node_name=f"{name}-live@%h")
        self.frozen_at = None

    def freeze(self) -> None:
        os.killpg(self.frozen.process.pid, signal.SIGSTOP)
        self.frozen_at = time.monotonic()

    def thaw(self) -> None:
        if self.frozen_at is not None:
            os.killpg(self.frozen.process.pid, signal.SIGCONT)
            self.frozen_at = None

    def thaw_after(self, seconds: float) -> None:
        """Keeps the worker frozen until `seconds` after the freeze, then lets it go on."""
        time.sleep(max(0.0, self.frozen_at + seconds - time.monotonic()))
        self.thaw()


def deployment_for(request, lease_seconds: int, env: dict) -> FrozenDeployment:
    name = f"{request.node.originalname[5:25]}-{request.node.callspec.id}"
    return FrozenDeployment(
        name,
        {
            "BATCH_CHUNK_LEASE_SECONDS": str(lease_seconds),
            "BATCH_CHUNK_LINES": "200",
            "DATABASE_LOCK_TIMEOUT_SECONDS": "2",
            **env,
        },
    )


@pytest.fixture
def frozen_progress_is_slow():
    """The frozen worker's update of a batch's counts (a chunk's last statements, under the
    batch's row lock) takes a second, so the test can stop it while it holds that lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION test_slow_progress() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF current_setting('application_name') = '{FROZEN}' THEN PERFORM pg_sleep(1); END IF;"
            " RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER test_slow_progress BEFORE UPDATE OF processed ON batches_batch"
            " FOR EACH ROW EXECUTE FUNCTION test_slow_progress()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS test_slow_progress ON batches_batch")
        cursor.execute("DROP FUNCTION IF EXISTS test_slow_progress()")


class CancelRequest(threading.Thread):
    """PATCH {"status": "cancel"} from another thread, so the test can time its answer."""

    def __init__(self, caller, batch: Batch):
        super().__init__(daemon=True)
        self.caller, self.batch = caller, batch
        self.response = None
        self.started_at = time.monotonic()

    def run(self) -> None:
        try:
            self.response = self.caller.client.patch(
                f"/batches/{self.batch.uuid}", {"status": "cancel"}, format="json"
            )
        finally:
            connection.close()
        self.answered_after = time.monotonic() - self.started_at


@pytest.mark.parametrize(("lease_seconds", "hold_seconds"), FREEZES)
def test_a_worker_frozen_holding_a_batch_row_stalls_nothing_but_itself(
    request, caller, stranger, frozen_progress_is_slow, lease_seconds, hold_seconds
):
    deployment = deployment_for(request, lease_seconds, {})
    try:
        batch = submit(caller, 6000)
        holder = wait_for(
            lambda: query_value(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event = 'PgSleep'",
                [FROZEN],
            ),
            timeout=120,
            interval=0.05,
            what="the frozen worker to update the batch's counts",
        )
        deployment.freeze()
        wait_for(
            lambda: query_value(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [holder]
            ),
            timeout=30,
            interval=0.05,
            what="another session to wait for the frozen worker's lock",
        )
        since = time.monotonic()
        bound = lease_seconds + 10
        cancel = CancelRequest(caller, batch)
        cancel.start()
        other = submit(stranger, 50)
        cancel.join(timeout=bound)
        assert not cancel.is_alive(), f"the cancel did not answer within {bound} s\n{deployment.log()}"
        assert cancel.response.status_code == 200, cancel.response.content
        assert cancel.response.json()["status"] in (S.CANCEL, S.CANCELLING)
        other_took = reached(other, S.COMPLETED, within=bound, since=since, deployment=deployment)
        cancelled_took = reached(batch, S.CANCELLED, within=bound, since=since, deployment=deployment)
        print(
            f"frozen {lease_seconds} s lease: cancel answered {cancel.answered_after:.1f} s, cancelled"
            f" {cancelled_took:.1f} s, another account's batch completed {other_took:.1f} s after the freeze"
        )
        deployment.thaw_after(hold_seconds)
        time.sleep(3)
        assert Batch.objects.get(pk=batch.pk).status == S.CANCELLED
        assert_ran_once(batch)
        assert_ran_once(other)
    finally:
        deployment.discard()


@pytest.mark.parametrize(("lease_seconds", "hold_seconds"), FREEZES)
def test_a_chunk_of_a_worker_frozen_mid_chunk_is_taken_over_and_runs_once(
    request, caller, lease_seconds, hold_seconds
):
    # Slow reads make a chunk's transaction last long enough to be stopped in.
    slow = {
        "DJANGO_SETTINGS_MODULE": "tests.support.slow_storage_settings",
        "SLOW_STORAGE_BYTES_PER_SECOND": "2000000",
        "BATCH_CHUNK_LINES": "500",
    }
    deployment = deployment_for(request, lease_seconds, slow)
    try:
        batch = submit(caller, 6000)
        wait_for(
            lambda: (
                Batch.objects.filter(pk=batch.pk, status=S.PROCESSING).exists()
                and query_value(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                    " AND backend_xid IS NOT NULL AND query LIKE %s",
                    [FROZEN, "%twins_%"],
                )
            ),
            timeout=120,
            interval=0.01,
            what="the frozen worker to write a chunk's twins",
        )
        deployment.freeze()
        since = time.monotonic()
        took = reached(batch, S.COMPLETED, within=lease_seconds + 10, since=since, deployment=deployment)
        print(f"frozen mid-chunk, {lease_seconds} s lease: completed {took:.1f} s after the freeze")
        deployment.thaw_after(hold_seconds)
        time.sleep(3)
        results = assert_ran_once(batch)
        assert {result["status"] for result in results} == {201}
    finally:
        deployment.discard()

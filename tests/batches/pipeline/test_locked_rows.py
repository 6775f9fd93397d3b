"""A batch row that another session holds locked (a frozen worker, until the database ends its
session) never stalls the sweep, and a cancel waits for it only boundedly, on PostgreSQL: the
sweep skips the row and resumes the batch once it is free; a cancel waits as long as a frozen
holder can keep the row, then answers 503 `batch_busy` and changes nothing."""

import contextlib
import threading
import time

import pytest
from django.db import connection

from batches.models import Batch, BatchStatus
from batches.pipeline import maintenance
from batches.states import batch_transition
from batchsite.clock import database_now_plus
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory

S = BatchStatus
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's"),
]
# Longer than any bound below: a caller that waits for the holder at all fails its bound.
HOLD_SECONDS = 15


@contextlib.contextmanager
def row_held(batch: Batch):
    """Another session locks the batch's row and keeps it (at most HOLD_SECONDS, so the test
    ends even where the code under test waits without end)."""
    holder = connection.get_new_connection(connection.get_connection_params())
    holder.execute("SET idle_in_transaction_session_timeout = 0")
    holder.execute(f"SELECT 1 FROM {Batch._meta.db_table} WHERE uuid = %s FOR UPDATE", [batch.pk])
    timer = threading.Timer(HOLD_SECONDS, holder.rollback)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        holder.rollback()
        holder.close()


def quiet_batch(caller) -> Batch:
    """A batch that lost its message: it sits in `copied`, untouched for a while."""
    batch = BatchFactory(caller=caller, content=jsonl([{"description": {"n": 1}}]))
    batch_transition(batch_id=batch.pk, to=S.COPYING)
    batch_transition(batch_id=batch.pk, to=S.COPIED)
    Batch.objects.filter(pk=batch.pk).update(heartbeat_at=database_now_plus(-600))
    return batch


def test_the_sweep_skips_a_locked_batch_row_and_resumes_the_batch_once_it_is_free(caller, stranger):
    locked, free = quiet_batch(caller), quiet_batch(stranger)
    asked = []
    with row_held(locked):
        started = time.monotonic()
        maintenance.sweep(asked.append)
        took = time.monotonic() - started
    assert took < 3, f"the sweep waited {took:.1f} s for a locked row"
    assert asked == [str(free.pk)]
    Batch.objects.filter(pk__in=[locked.pk, free.pk]).update(heartbeat_at=database_now_plus(-600))
    maintenance.sweep(asked.append)
    assert str(locked.pk) in asked[1:]


def test_a_cancel_waits_boundedly_for_a_locked_batch_row_then_answers_503(caller, settings):
    settings.DATABASE_IDLE_IN_TRANSACTION_SECONDS = 1
    settings.BATCH_CHUNK_LEASE_SECONDS = 1
    settings.BATCH_LEASE_SECONDS = 1
    settings.DATABASE_LOCK_TIMEOUT_SECONDS = 1
    batch = quiet_batch(caller)
    with row_held(batch):
        started = time.monotonic()
        response = caller.client.patch(f"/batches/{batch.uuid}", {"status": "cancel"}, format="json")
        took = time.monotonic() - started
    assert took < 6, f"the cancel answered after {took:.1f} s"
    assert response.status_code == 503, response.content
    assert response.json()["subcode"] == "batch_busy"
    assert set(response.json()) == {"subcode", "description", "trace"}
    assert Batch.objects.get(pk=batch.pk).status == S.COPIED

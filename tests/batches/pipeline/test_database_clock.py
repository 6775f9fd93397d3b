"""A process whose clock is wrong behaves like any other: leases, the sweep's claim, the status
history and the sweep's age all run on the database's clock. Here the process's clock is moved
(`timezone.now`) and the database's is left alone; test_clock_skew does it to real workers."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from batches.models import Batch, BatchStatus
from batches.pipeline import maintenance
from batches.pipeline.lease import Lease
from batches.states import batch_transition
from operating.selectors import pipeline_health
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import history

S = BatchStatus
pytestmark = pytest.mark.django_db(transaction=True)
REAL_NOW = timezone.now


@pytest.fixture
def process_clock(monkeypatch):
    """Sets how far this process's clock is off."""

    def set_offset(offset: timedelta) -> None:
        monkeypatch.setattr(timezone, "now", lambda: REAL_NOW() + offset)

    return set_offset


AHEAD = timedelta(minutes=10)
BEHIND = timedelta(seconds=-30)


def copying_batch(caller) -> Batch:
    batch = BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(2)))
    batch_transition(batch_id=batch.pk, to=S.COPYING)
    return batch


def test_a_lease_taken_by_a_clock_ahead_expires_on_time(caller, process_clock, settings):
    settings.BATCH_LEASE_SECONDS = 1
    batch = copying_batch(caller)
    process_clock(AHEAD)
    assert Lease(batch_id=batch.pk, status=S.COPYING).acquire()
    time.sleep(1.5)
    process_clock(BEHIND)
    assert str(batch.pk) in maintenance.batches_to_resume()
    assert Lease(batch_id=batch.pk, status=S.COPYING).acquire(), "the lost worker's lease expired"


def test_a_lease_taken_by_a_clock_behind_is_not_taken_over_while_live(caller, process_clock, settings):
    settings.BATCH_LEASE_SECONDS = 30
    batch = copying_batch(caller)
    process_clock(BEHIND)
    holder = Lease(batch_id=batch.pk, status=S.COPYING)
    assert holder.acquire()
    process_clock(AHEAD)
    assert str(batch.pk) not in maintenance.batches_to_resume()
    assert not Lease(batch_id=batch.pk, status=S.COPYING).acquire()
    assert Batch.objects.get(pk=batch.pk).lease_owner == holder.owner


def test_history_is_in_order_whichever_clock_wrote_it(caller, process_clock):
    batch = BatchFactory(caller=caller, content=jsonl([{"description": {}}]))
    for offset, status in ((AHEAD, S.COPYING), (BEHIND, S.COPIED), (AHEAD, S.VALIDATING)):
        process_clock(offset)
        assert batch_transition(batch_id=batch.pk, to=status) is not None
    assert history(batch) == [S.NEW, S.COPYING, S.COPIED, S.VALIDATING]


def test_the_sweep_age_is_never_negative_and_a_clock_behind_still_claims_it(process_clock):
    process_clock(AHEAD)
    assert maintenance.claim_run("sweep", every_seconds=0.2)
    process_clock(timedelta(0))
    assert pipeline_health()["sweep_age_seconds"] >= 0
    time.sleep(0.3)
    process_clock(BEHIND)
    assert maintenance.claim_run("sweep", every_seconds=0.2), "the sweep stalls behind a clock ahead"

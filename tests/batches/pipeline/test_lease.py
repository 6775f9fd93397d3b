"""One owner per single-worker step: a second delivery while the lease is live does nothing, a
resume after it expired runs the step, a failing step gives its lease back so its retry runs,
and a step that lost its lease publishes nothing."""

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from batches.models import Batch, BatchStatus
from batches.pipeline import copying, driver
from batches.pipeline.lease import Lease
from batches.states import batch_transition
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import InlinePipeline, history
from twins.models import Twin

S = BatchStatus
pytestmark = pytest.mark.django_db


def lines(count: int) -> bytes:
    return jsonl({"description": {"n": n}} for n in range(count))


def copying_batch(caller) -> Batch:
    batch = BatchFactory(caller=caller, content=lines(3))
    batch_transition(batch_id=batch.pk, to=S.COPYING)
    return batch


def test_a_second_delivery_while_the_lease_is_live_does_nothing(caller):
    batch = copying_batch(caller)
    running = Lease(batch_id=batch.pk, status=S.COPYING)
    assert running.acquire()
    before = history(batch)
    driver.batch_advance(batch.pk, InlinePipeline().enqueue)
    assert history(batch) == before
    assert Batch.objects.get(pk=batch.pk).lease_owner == running.owner


def test_a_resume_after_the_lease_expired_runs_the_step_and_the_stalled_one_publishes_nothing(caller):
    batch = copying_batch(caller)
    stalled = Lease(batch_id=batch.pk, status=S.COPYING)
    assert stalled.acquire()
    Batch.objects.filter(pk=batch.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    resumed = Lease(batch_id=batch.pk, status=S.COPYING)
    assert resumed.acquire(), "an expired lease is taken over"
    assert copying.step_copy(Batch.objects.get(pk=batch.pk), stalled) is None
    assert Batch.objects.get(pk=batch.pk).status == S.COPYING
    assert default_storage.listdir(f"batches/{batch.account_id}/{batch.pk}")[1] == [], "nothing left behind"
    copied = copying.step_copy(Batch.objects.get(pk=batch.pk), resumed)
    assert copied.status == S.COPIED and copied.lease_owner == ""
    runner = InlinePipeline()
    runner.advance(batch)
    runner.drain()
    assert Batch.objects.get(pk=batch.pk).status == S.COMPLETED
    assert Twin.objects.filter(account=caller.account).count() == 3


def test_a_failing_step_gives_its_lease_back_so_its_retry_runs(caller, monkeypatch):
    batch = copying_batch(caller)
    real_save = copying.storage_save_new
    failures = []

    def refuse_once(name, content):
        if not failures:
            failures.append(name)
            raise PermissionError(f"storage refused {name}")
        real_save(name, content)

    monkeypatch.setattr(copying, "storage_save_new", refuse_once)
    runner = InlinePipeline()
    with pytest.raises(PermissionError):
        driver.batch_advance(batch.pk, runner.enqueue)
    failed = Batch.objects.get(pk=batch.pk)
    assert (failed.status, failed.lease_owner) == (S.COPYING, "")
    runner.advance(batch)
    runner.drain()
    assert Batch.objects.get(pk=batch.pk).status == S.COMPLETED
    assert not default_storage.exists(failures[0])

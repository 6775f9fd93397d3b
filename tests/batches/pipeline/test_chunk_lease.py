"""A chunk is held by a lease, not a row lock: a live lease is left to its holder, an expired one
is taken over, and the stale holder commits nothing (its fence fails and its whole transaction
rolls back), so every line runs once. A stop takes the leases back."""

import pytest
from django.db import transaction

from batches import services
from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline import chunks, maintenance
from batches.pipeline.chunk_lease import ChunkLease, ChunkLeaseLost
from batchsite.clock import database_now_plus
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import InlinePipeline, into_processing, read_results
from twins.models import Twin

S = BatchStatus
pytestmark = pytest.mark.django_db


@pytest.fixture
def two_line_chunks(settings):
    settings.BATCH_CHUNK_LINES = 2


def processing_batch(caller, lines: int) -> tuple[Batch, InlinePipeline]:
    batch = BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(lines)))
    runner = into_processing(batch)
    return batch, runner


def claim(batch: Batch) -> ChunkLease:
    return ChunkLease.claim(
        batch_id=batch.pk, status=S.PROCESSING, unfinished={"done": False}, count=1, worker="stalled@host"
    )


def lease_lapses(lease: ChunkLease) -> None:
    """Its holder froze: the lease's expiry passes, on the database's clock."""
    Chunk.objects.filter(pk__in=lease.chunk_ids).update(lease_expires_at=database_now_plus(-1))


def test_a_live_chunk_lease_is_left_to_its_holder(caller, two_line_chunks):
    batch, _ = processing_batch(caller, 4)
    held = claim(batch)
    assert chunks.chunk_claim_and_run(batch.pk)
    assert not chunks.chunk_claim_and_run(batch.pk), "the held chunk was claimed a second time"
    assert (
        list(Chunk.objects.filter(batch_id=batch.pk, done=False).values_list("pk", flat=True))
        == held.chunk_ids
    )
    assert Chunk.objects.get(pk=held.chunk_ids[0]).worker == "stalled@host"


def test_an_expired_chunk_is_taken_over_and_its_stale_holder_commits_nothing(caller, two_line_chunks):
    batch, runner = processing_batch(caller, 4)
    stale = claim(batch)
    lease_lapses(stale)
    while chunks.chunk_claim_and_run(batch.pk):
        pass
    assert Batch.objects.get(pk=batch.pk).processed == 4
    with pytest.raises(ChunkLeaseLost):
        chunks.chunk_run(batch.pk, stale)
    assert Batch.objects.get(pk=batch.pk).processed == 4
    runner.advance(batch)
    runner.drain()
    batch.refresh_from_db()
    assert (batch.status, batch.processed, batch.succeeded) == (S.COMPLETED, 4, 4)
    assert sorted(Twin.objects.filter(account=caller.account).values_list("description__n", flat=True)) == [
        0,
        1,
        2,
        3,
    ]
    assert [result["line"] for result in read_results(batch.results_file)] == [1, 2, 3, 4]


def test_a_stop_takes_the_leases_back_so_a_stale_holder_commits_nothing(caller, two_line_chunks):
    batch, runner = processing_batch(caller, 4)
    stale = claim(batch)
    services.batch_cancel(batch=batch)
    lease_lapses(stale)
    runner.advance(batch)
    runner.drain()
    batch.refresh_from_db()
    assert batch.status == S.CANCELLED
    with pytest.raises(ChunkLeaseLost), transaction.atomic():
        stale.fence(stale.chunk_ids[0], done=True, executed_count=2)
    assert not Twin.objects.filter(account=batch.account).exists()
    assert {result["error"]["subcode"] for result in read_results(batch.results_file)} == {"not_executed"}


def test_the_sweep_asks_again_for_a_quiet_batch_once_a_chunk_lease_expired(caller, two_line_chunks, settings):
    settings.PIPELINE_KICK_AFTER_SECONDS = 5
    settings.BATCH_STUCK_AFTER_SECONDS = 60
    batch, _ = processing_batch(caller, 4)
    held = claim(batch)
    Batch.objects.filter(pk=batch.pk).update(heartbeat_at=database_now_plus(-10))
    assert str(batch.pk) not in maintenance.batches_to_resume(), "a live lease is its holder's"
    lease_lapses(held)
    assert str(batch.pk) in maintenance.batches_to_resume()

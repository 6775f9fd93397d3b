"""The pipeline run in this process, deterministically, step by step: what a worker would do
with the work it is asked for, in the order it was asked."""

import json
from collections import deque

from django.core.files.storage import default_storage

from batches import services
from batches.models import Batch, BatchStatus
from batches.pipeline import chunks, driver


class InlinePipeline:
    """The pipeline's queue, run in this process in the order work was asked for."""

    def __init__(self):
        self.pending = deque()
        self.enqueue = driver.Enqueue(
            advance=lambda batch_id: self.pending.append((driver.batch_advance, (batch_id,))),
            run_chunks=lambda: self.pending.append((driver.chunks_work, ())),
        )

    def advance(self, batch) -> None:
        self.enqueue.advance(str(batch.pk))

    def step(self) -> bool:
        if not self.pending:
            return False
        function, args = self.pending.popleft()
        function(*args, self.enqueue)
        return True

    def drain(self) -> None:
        while self.step():
            pass

    def run_until(self, batch, status: str) -> None:
        while Batch.objects.get(pk=batch.pk).status != status:
            assert self.step(), f"the pipeline stopped before {status}"


def into_processing(batch) -> InlinePipeline:
    """Runs the batch into processing; its chunks wait for the caller, who gets the pipeline."""
    runner = InlinePipeline()
    runner.advance(batch)
    runner.run_until(batch, BatchStatus.PROCESSING)
    return runner


def first_chunk_run(batch) -> InlinePipeline:
    """Runs the batch into processing and through its first chunk: a batch caught running."""
    runner = into_processing(batch)
    assert chunks.chunk_claim_and_run(batch.pk)
    return runner


def stop_after_first_chunk(batch, stop=None) -> Batch | None:
    """Runs the batch into processing and through its first chunk, stops it (a cancel by
    default; `services.batch_delete` deletes), then lets the pipeline finish."""
    runner = first_chunk_run(batch)
    (stop or services.batch_cancel)(batch=batch)
    runner.advance(batch)
    runner.drain()
    return Batch.objects.filter(pk=batch.pk).first()


def run_batch(batch) -> Batch | None:
    """Runs the batch as far as it goes; None once it is deleted."""
    runner = InlinePipeline()
    runner.advance(batch)
    runner.drain()
    return Batch.objects.filter(pk=batch.pk).first()


def read_results(name: str) -> list[dict]:
    with default_storage.open(name, "rb") as results:
        return [json.loads(line) for line in results.read().decode().splitlines()]


def history(batch) -> list[str]:
    return list(Batch.objects.get(pk=batch.pk).history.values_list("to_status", flat=True))

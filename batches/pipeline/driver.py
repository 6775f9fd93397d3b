"""The pipeline's entry points; Celery tasks call these and nothing else.

`batch_advance` runs a batch's next steps until it waits for chunk workers, for another
worker's step, or stops. `chunks_work` is one time slice of a chunk worker. `sweep` and
`housekeeping` are the periodic jobs. Every step is safe to run twice: statuses move only
through `batch_transition`, single-worker steps only under the batch's lease.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from batches.models import Batch, BatchStatus
from batches.pipeline import chunks, maintenance, scheduling
from batches.pipeline.copying import step_copy
from batches.pipeline.lease import Lease, LeaseLost, StepInterrupted
from batches.pipeline.results import step_finish_cancel, step_write_results
from batches.pipeline.retrying import step_build_retry_input, step_finish_unbuilt_cancel
from batches.pipeline.validating import step_validate
from batches.states import batch_transition
from batches.statuses import TERMINAL

logger = logging.getLogger(__name__)
S = BatchStatus


@dataclass(frozen=True)
class Enqueue:
    """How the pipeline asks for more work; batches.tasks gives the Celery-backed one."""

    advance: Callable[[str], None]
    run_chunks: Callable[[], None]


# A batch that ended (or is being deleted) settles the batches waiting on it.
ENDED = scheduling.PARENT_ENDED
LeasedStep = Callable[[Batch, Lease], Batch | None]


def step_input(batch: Batch, lease: Lease) -> Batch | None:
    """A batch copies its upload; a retry, which has none, builds its input from the batch it
    retries (a request never reads that batch's files)."""
    if batch.upload_id is None:
        return step_build_retry_input(batch, lease)
    return step_copy(batch, lease)


def step_stop(batch: Batch, lease: Lease) -> Batch | None:
    if batch.upload_id is None and not batch.input_file:
        return step_finish_unbuilt_cancel(batch, lease)
    return step_finish_cancel(batch, lease)


LEASED_STEPS: dict[str, LeasedStep] = {
    S.COPYING: step_input,
    S.WRITING_RESULTS: step_write_results,
    S.CANCELLING: step_stop,
    S.DELETING: maintenance.step_purge,
}
PASSING_TO: dict[str, str] = {
    S.COPIED: S.VALIDATING,
    S.PROCESSED: S.WRITING_RESULTS,
    S.CANCEL: S.CANCELLING,
}


def run_leased(batch: Batch, step: LeasedStep) -> None:
    lease = Lease(batch_id=batch.pk, status=batch.status)
    if not lease.acquire():
        return
    try:
        step(batch, lease)
    except StepInterrupted:
        pass
    except LeaseLost as lost:
        logger.warning("%s", lost)
    finally:
        lease.release()


def processing_step(batch: Batch, enqueue: Enqueue) -> None:
    undone = chunks.undone_chunks(batch.pk)
    if undone:
        for _ in range(min(undone, settings.BATCH_CHUNK_WORKERS)):
            enqueue.run_chunks()
        return
    if chunks.processing_finish(batch) is None:
        enqueue.run_chunks()


def validating_step(batch: Batch, enqueue: Enqueue) -> None:
    """Validates, or cuts the batch into chunks for the chunk workers to check, or merges the
    checked chunks: the leased step (validating.step_validate) decides which."""
    if not chunks.unvalidated_chunks(batch.pk):
        run_leased(batch, step_validate)
    for _ in range(min(chunks.unvalidated_chunks(batch.pk), settings.BATCH_CHUNK_WORKERS)):
        enqueue.run_chunks()


def batch_step(batch_id, enqueue: Enqueue) -> bool:
    """Runs the batch's next step; True when its status moved (by this step or meanwhile)."""
    batch = Batch.objects.select_related("upload", "account").filter(pk=batch_id).first()
    if batch is None:
        return False
    status = batch.status
    if status in ENDED:
        scheduling.dependents_settle(batch.pk, enqueue.advance)
    if batch.delete_requested_at and status in TERMINAL:
        batch_transition(batch_id=batch.pk, to=S.DELETING, allowed_from=[status])
    elif status == S.NEW:
        scheduling.batch_start(batch.pk)
    elif status in PASSING_TO:
        batch_transition(batch_id=batch.pk, to=PASSING_TO[status], allowed_from=[status])
    elif status == S.PROCESSING:
        processing_step(batch, enqueue)
    elif status == S.VALIDATING:
        validating_step(batch, enqueue)
    elif status in LEASED_STEPS:
        run_leased(batch, LEASED_STEPS[status])
    current = Batch.objects.filter(pk=batch_id).values_list("status", flat=True).first()
    return current is not None and current != status


def batch_advance(batch_id, enqueue: Enqueue) -> None:
    """Runs the batch's next steps for as long as its status keeps moving."""
    while batch_step(batch_id, enqueue):
        pass


def chunks_work(enqueue: Enqueue) -> None:
    """A chunk worker's slice: runs the chunks due, fairly across accounts, for up to
    BATCH_SLICE_SECONDS, then queues itself again behind the other work if any is left. A batch
    whose last chunk it ran (or that it saw stop) is moved on at once, not queued."""
    deadline = time.monotonic() + settings.BATCH_SLICE_SECONDS
    while True:
        batch_id = chunks.chunk_run_next()
        if batch_id is None:
            return
        if chunks.chunk_work_settled(batch_id):
            batch_advance(batch_id, enqueue)
        if time.monotonic() >= deadline:
            enqueue.run_chunks()
            return
        chunks.let_other_writers_in()


def sweep(enqueue: Enqueue) -> int:
    """Stops batches past their deadline and resumes batches no worker is moving (scheduled
    ones that became due among them), when this process gets the job's turn."""
    if not maintenance.claim_run("sweep", every_seconds=settings.PIPELINE_SWEEP_SECONDS):
        return 0
    resumed = maintenance.sweep(enqueue.advance)
    maintenance.finish_run("sweep")
    return resumed


def housekeeping(enqueue: Enqueue) -> dict:
    """Expires uploads, removes orphaned upload and batch files, deletes batches past retention."""
    if not maintenance.claim_run("housekeeping", every_seconds=settings.MAINTENANCE_INTERVAL_SECONDS):
        return {}
    done = {
        "uploads_expired": maintenance.uploads_expire(),
        "orphans_removed": maintenance.uploads_remove_orphans(),
        "spools_removed": maintenance.spool_remove_stale(),
        "batch_files_removed": maintenance.batch_files_remove_orphans(),
        "batches_expired": maintenance.batches_past_retention(enqueue.advance),
    }
    maintenance.finish_run("housekeeping")
    return done

"""Celery entry points. Each loads by id and calls the pipeline; all state is in the database,
so a task delivered twice (acks late, re-delivered after a crash) finds its work done."""

from celery import shared_task
from django.db import OperationalError, transaction

from batches import pipeline


def pipeline_task(**options):
    """The one task decorator: acknowledged only when finished, re-queued if the worker
    process dies, retried on database hiccups (lock time-outs, dropped connections)."""
    return shared_task(
        acks_late=True,
        reject_on_worker_lost=True,
        autoretry_for=(OperationalError,),
        retry_backoff=True,
        retry_backoff_max=60,
        max_retries=5,
        soft_time_limit=6 * 3600,
        time_limit=6 * 3600 + 60,
        **options,
    )


def enqueue_after_commit(task, batch_id: str, **kwargs) -> None:
    transaction.on_commit(lambda: task.apply_async(args=[batch_id], kwargs=kwargs))


CELERY_ENQUEUE = pipeline.Enqueue(
    advance=lambda batch_id: enqueue_after_commit(batch_advance, batch_id),
    resume=lambda batch_id: enqueue_after_commit(batch_advance, batch_id, resume=True),
    run_chunks=lambda batch_id: enqueue_after_commit(batch_run_chunks, batch_id),
)


@pipeline_task(bind=True)
def batch_advance(self, batch_id: str, resume: bool = False) -> None:
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    pipeline.batch_advance(batch_id, CELERY_ENQUEUE, resume=resume or redelivered)


@pipeline_task()
def batch_run_chunks(batch_id: str) -> None:
    pipeline.chunks_run(batch_id, CELERY_ENQUEUE)


@shared_task(ignore_result=True)
def batches_maintain() -> dict:
    """Periodic: resume stuck batches, drop lapsed uploads, delete batches past retention."""
    return {
        "resumed": pipeline.batches_resume_stuck(CELERY_ENQUEUE),
        "uploads_expired": pipeline.uploads_expire(),
        "batches_expired": pipeline.batches_past_retention(CELERY_ENQUEUE),
    }

"""The one task decorator of the project's tasks (pipeline steps, chunk work, maintenance,
webhook deliveries). A leaf module: tasks of other apps use it without importing the pipeline."""

from celery import shared_task

from batches.pipeline.faults import RETRIED_ERRORS, ChunkIncomplete, StorageReadError


def pipeline_task(**options):
    """The one task decorator: acknowledged only when finished, re-queued if the worker
    process dies, retried with backoff on database and storage faults."""
    return shared_task(
        acks_late=True,
        reject_on_worker_lost=True,
        autoretry_for=(*RETRIED_ERRORS, StorageReadError, ChunkIncomplete),
        retry_backoff=1,
        retry_backoff_max=30,
        retry_jitter=True,
        max_retries=8,
        soft_time_limit=6 * 3600,
        time_limit=6 * 3600 + 60,
        ignore_result=True,
        **options,
    )

"""Celery entry points. Each loads by id and calls the pipeline's driver; all state is in the
database, so a task delivered twice (acks late, redelivered after a crash or a dropped broker
connection) finds its work done or owned by another execution, and does nothing.

Queues by workload: chunk slices go to `chunks`, pipeline steps and maintenance to `pipeline`,
so a step never waits behind a queue of chunk work.
"""

import logging
import threading
import time

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import close_old_connections, transaction

from batches.pipeline import driver
from batches.pipeline.faults import RETRIED_ERRORS, ChunkIncomplete, StorageReadError
from batchsite.publishing import publish

logger = logging.getLogger(__name__)


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


def enqueue_after_commit(task, *args) -> None:
    transaction.on_commit(lambda: publish(task, *args))


CELERY_ENQUEUE = driver.Enqueue(
    advance=lambda batch_id: enqueue_after_commit(batch_advance, batch_id),
    run_chunks=lambda: enqueue_after_commit(chunks_work),
)


@pipeline_task()
def batch_advance(batch_id: str) -> None:
    driver.batch_advance(batch_id, CELERY_ENQUEUE)


@pipeline_task()
def chunks_work() -> None:
    driver.chunks_work(CELERY_ENQUEUE)


@pipeline_task()
def batches_sweep() -> int:
    """Periodic: resume batches whose worker or message was lost."""
    return driver.sweep(CELERY_ENQUEUE)


@pipeline_task()
def batches_housekeeping() -> dict:
    """Periodic: drop lapsed uploads and orphaned files, delete batches past retention."""
    return driver.housekeeping(CELERY_ENQUEUE)


def maintenance_timer() -> None:
    """Runs the periodic jobs from this worker when they are due, so recovery does not depend
    on the one beat process being alive."""
    while True:
        time.sleep(settings.PIPELINE_SWEEP_SECONDS)
        try:
            driver.sweep(CELERY_ENQUEUE)
            driver.housekeeping(CELERY_ENQUEUE)
        except Exception:
            logger.exception("maintenance from the worker failed; trying again")
        finally:
            close_old_connections()


@worker_ready.connect
def start_maintenance_timer(**_) -> None:
    threading.Thread(target=maintenance_timer, name="maintenance", daemon=True).start()

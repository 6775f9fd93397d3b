"""Celery entry points. Each loads by id and calls the pipeline's driver; all state is in the
database, so a task delivered twice (acks late, redelivered after a crash or a dropped broker
connection) finds its work done or owned by another execution, and does nothing.

Queues by workload: chunk slices go to `chunks`, pipeline steps and maintenance to `pipeline`,
so a step never waits behind a queue of chunk work.
"""

import gc
import logging
import threading
import time

from celery.signals import worker_process_init, worker_ready
from django.conf import settings
from django.db import close_old_connections, transaction

from batches.pipeline import driver, sessions
from batchsite.publishing import publish
from batchsite.task_decorator import MAX_RETRIES, RETRIED, fault_line, pipeline_task

logger = logging.getLogger(__name__)


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
    failures = 0
    while True:
        time.sleep(settings.PIPELINE_SWEEP_SECONDS)
        try:
            driver.sweep(CELERY_ENQUEUE)
            driver.housekeeping(CELERY_ENQUEUE)
            failures = 0
        except RETRIED as error:
            failures += 1
            maintenance_fault_log(error, failures)
        except Exception:
            logger.exception("maintenance from the worker failed; trying again")
        finally:
            close_old_connections()


def maintenance_fault_log(error: BaseException, failures: int) -> None:
    """A database or storage outage logs one line per try, as a task's retries do, and its
    traceback once, when it has lasted as many tries as a task makes before it gives up."""
    if failures == MAX_RETRIES + 1:
        logger.error(
            "maintenance from the worker failed %d times in a row; still trying", failures, exc_info=error
        )
    else:
        logger.warning("maintenance from the worker failed (%s); trying again", fault_line(error))


# A worker's sessions (its pool's, and the main process's maintenance thread's) take the
# step's database limits; chunks and the sweep set their own per transaction.
worker_process_init.connect(sessions.worker_sessions_enable)
worker_ready.connect(sessions.worker_sessions_enable)


@worker_process_init.connect
@worker_ready.connect
def startup_objects_freeze(**_) -> None:
    """Moves every object alive once the worker has started (Django's, Celery's, the modules')
    out of the garbage collector's sight. A chunk allocates about a hundred objects a line, so
    the collector's oldest generation runs every few chunks, and each run walked all of them."""
    gc.freeze()


@worker_ready.connect
def start_maintenance_timer(**_) -> None:
    threading.Thread(target=maintenance_timer, name="maintenance", daemon=True).start()

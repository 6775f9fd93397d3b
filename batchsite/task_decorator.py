"""The one task decorator of the project's tasks (pipeline steps, chunk work, maintenance,
webhook deliveries), in the ground so that every app's tasks use it."""

from celery import shared_task

from batchsite.faults import RETRIED_ERRORS, RetriedFault

# Infrastructure faults: a task retries on them (then the sweep takes over), and a process's own
# loop (the maintenance timer) tries again.
RETRIED = (*RETRIED_ERRORS, RetriedFault)
MAX_RETRIES = 8


def fault_line(error: BaseException) -> str:
    """The error on one line: an outage logs one line per try, its traceback once."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def pipeline_task(**options):
    """The one task decorator: acknowledged only when finished, re-queued if the worker
    process dies, retried with backoff on database and storage faults."""
    return shared_task(
        acks_late=True,
        reject_on_worker_lost=True,
        autoretry_for=RETRIED,
        retry_backoff=1,
        retry_backoff_max=30,
        retry_jitter=True,
        max_retries=MAX_RETRIES,
        soft_time_limit=6 * 3600,
        time_limit=6 * 3600 + 60,
        ignore_result=True,
        **options,
    )

"""Publishing a task to the broker without letting the broker decide the request's fate.

A request that has committed its work answers as if the publish succeeded: a broker that
refuses or never answers costs at most BROKER_PUBLISH_TIMEOUT_SECONDS and a logged error, and
the work is picked up by its sweep (the pipeline's, the webhooks'), which finds it in the
database within seconds. Publishing runs in a small thread pool because a broker that accepts
a connection and then never answers can block a client library past any of its own time-outs.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings

logger = logging.getLogger(__name__)
_publisher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="publish")


def call_with_deadline(function, *, seconds: float):
    """`function()`'s value, or TimeoutError once `seconds` pass (the call may go on in its thread)."""
    future = _publisher.submit(function)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        raise TimeoutError(f"no answer within {seconds} s") from None


def publish(task, *args) -> bool:
    """Sends the task; False (logged) when the broker did not take it in time."""
    if task.app.conf.task_always_eager:
        task.apply(args=args)
        return True
    try:
        call_with_deadline(
            lambda: task.apply_async(args=args), seconds=settings.BROKER_PUBLISH_TIMEOUT_SECONDS
        )
    except Exception as error:  # noqa: BLE001 - any broker fault; the sweep starts the work
        logger.error("could not publish %s%r: %r; its sweep will pick it up", task.name, args, error)
        return False
    return True

"""Operating's listeners to the other apps' signals (and Celery's), connected in
`OperatingConfig.ready()`."""

import logging
import threading

from django.conf import settings
from django.db import close_old_connections, transaction

from batches.signals import batch_transitioned, chunk_lines_ran
from batchsite.signals import delivery_attempted, web_worker_exiting
from operating import metrics, services

logger = logging.getLogger(__name__)


def batch_transition_observe(sender, *, source: str, target: str, source_entered_at, **kwargs) -> None:
    transaction.on_commit(
        lambda: metrics.transition_observed(source=source, to=target, entered_at=source_entered_at)
    )


def chunk_lines_record(sender, *, batch, lines: int, failed: int, seconds: float, **kwargs) -> None:
    services.usage_record_batch_lines(
        account_id=batch.account_id,
        user_id=batch.created_by_id,
        lines=lines,
        failed=failed,
        operation=batch.operation,
        seconds=seconds,
    )


def webhook_delivery_count(sender, outcome: str, **kwargs) -> None:
    metrics.webhook_deliveries.labels(outcome).inc()


def usage_write_pending(sender, **kwargs) -> None:
    services.usage_flush(force=True)


class WorkerHeartbeat:
    """The heartbeat of this worker node: a thread of its main process writes the node's row
    every WORKER_HEARTBEAT_SECONDS from when the worker is ready, and deletes it when the
    worker stops. A node killed outright stops writing and drops out after WORKER_ALIVE_SECONDS."""

    stopping = threading.Event()
    thread: threading.Thread | None = None
    node = ""

    @classmethod
    def start(cls, sender, **kwargs) -> None:
        cls.node = sender.hostname
        queues = [queue.name for queue in sender.task_consumer.queues]
        cls.thread = threading.Thread(target=cls.beat, args=(queues,), name="worker-heartbeat", daemon=True)
        cls.thread.start()

    @classmethod
    def beat(cls, queues: list[str]) -> None:
        while not cls.stopping.is_set():
            try:
                services.worker_heartbeat_record(node=cls.node, queues=queues)
            except Exception:
                logger.exception("could not write this worker's heartbeat; trying again")
            finally:
                close_old_connections()
            cls.stopping.wait(settings.WORKER_HEARTBEAT_SECONDS)

    @classmethod
    def stop(cls, **kwargs) -> None:
        if cls.thread is None:
            return
        cls.stopping.set()
        cls.thread.join(timeout=10)
        try:
            services.worker_heartbeat_remove(node=cls.node)
        except Exception:
            logger.exception("could not remove this worker's heartbeat; it lapses by itself")


def connect() -> None:
    from celery.signals import worker_ready, worker_shutdown

    batch_transitioned.connect(batch_transition_observe, dispatch_uid="operating.batch_transition_observe")
    chunk_lines_ran.connect(chunk_lines_record, dispatch_uid="operating.chunk_lines_record")
    delivery_attempted.connect(webhook_delivery_count, dispatch_uid="operating.webhook_delivery_count")
    web_worker_exiting.connect(usage_write_pending, dispatch_uid="operating.usage_write_pending")
    worker_ready.connect(WorkerHeartbeat.start, weak=False, dispatch_uid="operating.worker_heartbeat_start")
    worker_shutdown.connect(WorkerHeartbeat.stop, weak=False, dispatch_uid="operating.worker_heartbeat_stop")

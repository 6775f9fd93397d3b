"""GET /healthz: 200 only when the database, the broker and the storage all answer, within
HEALTH_CHECK_SECONDS whatever they do (a broker that accepts connections and never answers
counts as failing, it does not hang the probe).

It also reports what an operator alerts on, without failing on it (a web host is healthy for
the load balancer even when the workers are not): the local storage's free space, and what the
apps register (`register_health_report`; operating's "pipeline": the worker nodes seen alive,
how long ago the maintenance sweep last ran, how many active batches have stalled).
`/metrics` exports the same as gauges, with the broker's queue depths (docs/operations.md#metrics).
"""

import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from django.http import JsonResponse

from batchsite.celery import app as celery_app
from batchsite.middleware import require_safe

logger = logging.getLogger(__name__)
# Checks that may hang run here; a hung one keeps its thread, never the request.
_checkers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="healthz")
UNKNOWN_DEPTH = -1


def check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker():
    with celery_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=settings.HEALTH_CHECK_SECONDS)
        if broker.transport.driver_type == "filesystem":
            # kombu's filesystem transport "connects" without looking at its folders, and the
            # folders are the queue: check them instead.
            for option in ("data_folder_in", "data_folder_out"):
                folder = Path(broker.transport_options[option])
                if not (folder.is_dir() and os.access(folder, os.W_OK)):
                    raise OSError(f"broker folder {folder} is not a writable directory")


def check_storage():
    # A write and a delete: `exists()` answers False without error on a missing or
    # unwritable local folder, so only a write proves uploads and results can be stored.
    name = default_storage.save("healthz/probe", ContentFile(b"ok"))
    default_storage.delete(name)


def storage_space() -> dict | None:
    """Free space where the local storage keeps its files; None for a remote one (S3)."""
    if not isinstance(default_storage, FileSystemStorage):
        return None
    # The disk its folder will be on: a fresh installation's folder appears with its first file.
    folder = Path(default_storage.location)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    free_ratio = usage.free / usage.total if usage.total else 0.0
    return {
        "free_bytes": usage.free,
        "total_bytes": usage.total,
        "free_ratio": round(free_ratio, 4),
        "nearly_full": free_ratio < settings.STORAGE_LOW_FREE_RATIO,
    }


def queue_not_found(error: Exception) -> bool:
    """A passive declare of a queue the broker does not hold (to Redis, an empty queue is no
    key at all): reply code 404, an int from RabbitMQ, a string from kombu's virtual transports."""
    return str(getattr(error, "reply_code", "")) == "404"


def broker_queue_depths() -> dict[str, int]:
    """{queue: messages waiting in it} for the queues of the settings, asked of the broker:
    RabbitMQ's passive queue.declare, Redis's LLEN, the filesystem broker's message files."""
    depths = {}
    with celery_app.connection_for_read() as broker:
        broker.ensure_connection(max_retries=1, timeout=settings.HEALTH_CHECK_SECONDS)
        for queue in settings.CELERY_TASK_QUEUES:
            # A channel each: RabbitMQ closes the channel of a passive declare that failed.
            with broker.channel() as channel:
                try:
                    depths[queue.name] = channel.queue_declare(queue=queue.name, passive=True).message_count
                except Exception as error:
                    if not queue_not_found(error):
                        raise
                    depths[queue.name] = 0
    return depths


class BoundedProbe:
    """Runs a probe that may hang in the checkers' pool and waits for it at most
    HEALTH_CHECK_SECONDS. While one run is still out (a broker that never answers), later calls
    wait on that same run rather than start another, so a hung component holds one thread per
    process, however often it is scraped."""

    def __init__(self, probe):
        self.probe = probe
        self.lock = threading.Lock()
        self.running: Future | None = None

    def start(self) -> Future:
        with self.lock:
            if self.running is None or self.running.done():
                self.running = _checkers.submit(self.probe)
            return self.running

    def __call__(self):
        running = self.start()
        done, _ = wait([running], timeout=settings.HEALTH_CHECK_SECONDS)
        if not done:
            raise TimeoutError(f"{self.probe.__name__}: no answer in {settings.HEALTH_CHECK_SECONDS} s")
        return running.result()


bounded_queue_depths = BoundedProbe(broker_queue_depths)
bounded_storage_space = BoundedProbe(storage_space)


def queue_depths_or_unknown() -> dict[str, int]:
    """The broker's queue depths, or UNKNOWN_DEPTH for each when it does not answer in time."""
    try:
        return bounded_queue_depths()
    except Exception as error:  # noqa: BLE001 - any failure means "unknown", never a failed scrape
        logger.warning("queue depths unknown: %s", error)
        return {queue.name: UNKNOWN_DEPTH for queue in settings.CELERY_TASK_QUEUES}


@dataclass(frozen=True)
class HealthReport:
    report: Callable[[], dict]
    fields: tuple[str, ...]


# The apps' reports, registered in their AppConfig.ready(): the ground imports no app.
_reports: dict[str, HealthReport] = {}


def register_health_report(name: str, report: Callable[[], dict], *, fields: Sequence[str]) -> None:
    """Adds `report()` to /healthz's answer under `name`: what an app tells operators to alert
    on, never failing the check. It reads the database, so it runs only when the database
    answered; when it fails, each of `fields` is reported null."""
    _reports[name] = HealthReport(report=report, fields=tuple(fields))


def reported(name: str, registered: HealthReport) -> dict:
    try:
        return registered.report()
    except Exception as error:  # noqa: BLE001 - e.g. before the first migrate; never a 500
        logger.warning("healthz: %s health unknown: %s", name, error)
        return dict.fromkeys(registered.fields)


@require_safe
def healthz(request):
    results = {}
    try:
        check_database()
        results["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means "not healthy"
        logger.warning("healthz: database failed: %s", error)
        results["database"] = "failing"
    space = bounded_storage_space.start()
    pending = {
        _checkers.submit(check): name
        for name, check in (("broker", check_broker), ("storage", check_storage))
    }
    done, _ = wait([*pending, space], timeout=settings.HEALTH_CHECK_SECONDS)
    for future, name in pending.items():
        error = future.exception() if future in done else TimeoutError("no answer in time")
        if error is not None:
            logger.warning("healthz: %s failed: %s", name, error)
        results[name] = "ok" if error is None else "failing"
    healthy = all(value == "ok" for value in results.values())
    if results["database"] == "ok":
        for name, registered in _reports.items():
            results[name] = reported(name, registered)
    # Reported, never failing the check: a full disk already fails the storage probe's write.
    results["storage_space"] = space.result() if space in done and space.exception() is None else None
    return JsonResponse(results, status=200 if healthy else 503)

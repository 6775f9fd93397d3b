"""GET /healthz: 200 only when the database, the broker and the storage all answer, within
HEALTH_CHECK_SECONDS whatever they do (a broker that accepts connections and never answers
counts as failing, it does not hang the probe).

It also reports the pipeline's own health, without failing on it (a web host is healthy even
when the workers are not): how long ago the maintenance sweep last ran, and how many active
batches have not moved for BATCH_ALARM_AFTER_SECONDS. Alert on those (README, "Failure model").
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import DurationField, ExpressionWrapper, F
from django.http import JsonResponse

from batches.models import MaintenanceRun
from batches.pipeline.maintenance import stalled_batches
from batchsite.celery import app as celery_app
from batchsite.clock import DatabaseNow
from batchsite.middleware import require_safe

logger = logging.getLogger(__name__)
# Checks that may hang run here; a hung one keeps its thread, never the request.
_checkers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="healthz")


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


def pipeline_health() -> dict:
    # In the database's time, as the sweep's claim wrote it: no host's clock enters the age.
    age = (
        MaintenanceRun.objects.filter(name="sweep")
        .annotate(age=ExpressionWrapper(DatabaseNow() - F("started_at"), output_field=DurationField()))
        .values_list("age", flat=True)
        .first()
    )
    return {
        "sweep_age_seconds": round(age.total_seconds(), 1) if age is not None else None,
        "stalled_batches": stalled_batches(),
    }


@require_safe
def healthz(request):
    results = {}
    try:
        check_database()
        results["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means "not healthy"
        logger.warning("healthz: database failed: %s", error)
        results["database"] = "failing"
    pending = {
        _checkers.submit(check): name
        for name, check in (("broker", check_broker), ("storage", check_storage))
    }
    done, _ = wait(pending, timeout=settings.HEALTH_CHECK_SECONDS)
    for future, name in pending.items():
        error = future.exception() if future in done else TimeoutError("no answer in time")
        if error is not None:
            logger.warning("healthz: %s failed: %s", name, error)
        results[name] = "ok" if error is None else "failing"
    healthy = all(value == "ok" for value in results.values())
    if results["database"] == "ok":
        try:
            results["pipeline"] = pipeline_health()
        except Exception as error:  # noqa: BLE001 - e.g. before the first migrate; never a 500
            logger.warning("healthz: pipeline health unknown: %s", error)
            results["pipeline"] = {"sweep_age_seconds": None, "stalled_batches": None}
    return JsonResponse(results, status=200 if healthy else 503)

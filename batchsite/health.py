"""GET /healthz: 200 only when the database, the broker and the storage all answer."""

import logging
import os
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import JsonResponse

from batchsite.celery import app as celery_app
from batchsite.errors import error_body

logger = logging.getLogger(__name__)


def check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker():
    with celery_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=3)
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


CHECKS = {"database": check_database, "broker": check_broker, "storage": check_storage}


def healthz(request):
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(
            error_body(
                status_code=405,
                subcode="method_not_allowed",
                description=f'Method "{request.method}" not allowed.',
            ),
            status=405,
        )
        response["Allow"] = "GET, HEAD"
        return response
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure means "not healthy"
            logger.warning("healthz: %s failed: %s", name, error)
            results[name] = "failing"
    healthy = all(value == "ok" for value in results.values())
    return JsonResponse(results, status=200 if healthy else 503)

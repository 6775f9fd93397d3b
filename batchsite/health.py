"""GET /healthz: 200 only when the database, the broker and the storage all answer."""

import logging

from django.core.files.storage import default_storage
from django.db import connection
from django.http import JsonResponse

from batchsite.celery import app as celery_app

logger = logging.getLogger(__name__)


def check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker():
    with celery_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=3)


def check_storage():
    default_storage.exists("healthz")


CHECKS = {"database": check_database, "broker": check_broker, "storage": check_storage}


def healthz(request):
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

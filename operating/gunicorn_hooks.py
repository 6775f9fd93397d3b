"""Gunicorn server hooks (called from batchsite/gunicorn_conf.py): when a worker exits,
its live-gauge files in the Prometheus multiprocess folder go with it (counters and
histograms of dead workers stay, as they must: their totals still count); and a worker that
stops writes the API calls it counted but has not written yet."""

import os


def child_exit(server, worker):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "batchsite.settings")
    from django.conf import settings
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(settings.PROMETHEUS_MULTIPROC_DIR))


def worker_exit(server, worker):
    from operating.services import usage_flush

    usage_flush(force=True)

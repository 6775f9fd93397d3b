"""Gunicorn settings for `make run` and `make web` (the bind address and the worker count come
from their command lines), and the server hooks the metrics and the usage counts need. Limits
and timeouts drop slow or stalled clients; see batchsite/serving.py. Production runs behind a
buffering proxy (deploy/nginx.conf)."""

from batchsite.serving import project_settings

worker_class = "batchsite.serving.DeadlineThreadWorker"
# WEB_THREADS and WEB_TIMEOUT as every process resolves them: the environment, then `.env`.
threads = project_settings().WEB_THREADS
# A worker silent this long (a request stuck in the app) is killed and replaced.
timeout = project_settings().WEB_TIMEOUT
graceful_timeout = 30
keepalive = 5
# The request head: line, header count and size (gunicorn's defaults, stated).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# No control socket: its default path is shared by every gunicorn of the user.
control_socket_disable = True
accesslog = "-"
logger_class = "batchsite.serving.RedactingLogger"


def child_exit(server, worker):
    """In the arbiter, which loads no app: a dead worker's live-gauge files in the Prometheus
    multiprocess folder (PROMETHEUS_MULTIPROC_DIR, set by the settings) go with it; counters and
    histograms of dead workers stay, as they must: their totals still count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(project_settings().PROMETHEUS_MULTIPROC_DIR))


def worker_exit(server, worker):
    """In a worker that stops, with the app loaded: the apps write what they hold in memory
    (operating: the API calls it counted but has not written yet)."""
    from batchsite.signals import web_worker_exiting

    web_worker_exiting.send(sender=None)

"""Gunicorn settings for `make run` and `make web` (the bind address and the worker count come
from their command lines), and the server hooks the metrics need. Limits and timeouts drop
slow or stalled clients; see batchsite/serving.py. Production runs behind a buffering proxy
(deploy/nginx.conf)."""

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


# Server hooks of the metrics (operating.gunicorn_hooks), imported when gunicorn calls them,
# after the app put the project on the path.
def child_exit(server, worker):
    from operating.gunicorn_hooks import child_exit as hook

    hook(server, worker)


def worker_exit(server, worker):
    from operating.gunicorn_hooks import worker_exit as hook

    hook(server, worker)

"""Gunicorn settings for `make run` and `make web` (the bind address and the worker count come
from their command lines), and the server hooks the metrics need. Limits and timeouts drop
slow or stalled clients; see batchsite/serving.py. Production runs behind a buffering proxy
(deploy/nginx.conf)."""

import os

worker_class = "batchsite.serving.DeadlineThreadWorker"
threads = int(os.environ.get("WEB_THREADS", "4"))
# A worker silent this long (a request stuck in the app) is killed and replaced.
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
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

"""Log context and `LOG_FORMAT=json`: one JSON object per line with ts, level, logger, message
and, where known, the request's trace, the account and the batch.

The context lives in contextvars: the middleware sets trace and account for a request, a
Celery signal sets the batch for a pipeline task, so every log line written meanwhile (by any
logger) carries them without passing them around. gunicorn's own lines take the same format
(batchsite.serving); an access line also has its method, path, status and duration as fields."""

import contextvars
import json
import logging
import uuid
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

trace_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace", default=None)
account_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("account", default=None)
batch_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("batch", default=None)

CONTEXT = {"trace": trace_var, "account": account_var, "batch": batch_var}


def new_trace() -> str:
    trace = uuid.uuid4().hex
    trace_var.set(trace)
    return trace


def current_trace() -> str | None:
    return trace_var.get()


class ContextFilter(logging.Filter):
    """Copies the context onto each record (as record.trace, record.account, record.batch)."""

    def filter(self, record):
        for name, var in CONTEXT.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


# gunicorn's access-log atoms (batchsite.serving redacted them) that become fields of their own.
ACCESS_FIELDS = {
    "method": "m",
    "path": "U",
    "query": "q",
    "status": "s",
    "bytes": "B",
    "duration_ms": "M",
    "remote_addr": "h",
}


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            for field, atom in ACCESS_FIELDS.items():
                value = record.args.get(atom)
                if value not in (None, "", "-"):
                    entry[field] = int(value) if field == "status" and str(value).isdigit() else value
        for name, var in CONTEXT.items():
            value = getattr(record, name, None) or var.get()
            if value:
                entry[name] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


# Tasks of one batch take its id as their first argument; a chunk worker's task serves several
# batches and names each chunk's with batch_logged.
BATCH_TASKS = ("batches.tasks.batch_advance",)


@contextmanager
def batch_logged(batch_id):
    """Every line logged meanwhile carries `batch`: for a task that works for one batch after
    another (a chunk worker's slice)."""
    token = batch_var.set(str(batch_id))
    try:
        yield
    finally:
        batch_var.reset(token)


def _task_started(sender=None, task=None, args=None, **kwargs):
    name = getattr(task, "name", "")
    batch_var.set(str(args[0]) if name in BATCH_TASKS and args else None)
    trace_var.set(getattr(getattr(task, "request", None), "id", None))


def _task_finished(**kwargs):
    batch_var.set(None)
    trace_var.set(None)


def _keep_django_logging(**kwargs):
    """Receiving `setup_logging` stops Celery from replacing the handlers Django's LOGGING set
    up, so a worker's lines (Celery's own included) come out as JSON too."""


def connect_task_context() -> None:
    from celery.signals import setup_logging, task_postrun, task_prerun
    from django.conf import settings

    task_prerun.connect(_task_started, weak=False, dispatch_uid="batchsite-log-context")
    task_postrun.connect(_task_finished, weak=False, dispatch_uid="batchsite-log-context")
    if settings.LOG_FORMAT == "json":
        setup_logging.connect(_keep_django_logging, weak=False, dispatch_uid="batchsite-json-logs")

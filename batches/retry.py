"""Retrying a batch: a new batch of only the lines that failed or never ran (docs/contract.md, section 3).

The request only checks and creates the batch; its first step, on a worker, reads the lines
from this batch's files (batches.pipeline.retrying), so a request's work does not grow with
the number of failed lines."""

from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import IntegrityError

from batches import services
from batches.models import Batch
from batches.pipeline.mixed import may_batch
from batches.pipeline.retrying import RETRYABLE
from batchsite.errors import Conflict

__all__ = ["RETRYABLE", "batch_retry", "live_retry"]


def lines_left(batch: Batch) -> bool:
    """Whether the errors part lists a line: one record per line that failed or never ran, so
    its size tells, without reading it."""
    if not default_storage.exists(batch.errors_file):
        raise Conflict(
            f"The files of batch {batch.pk} are no longer stored; it cannot be retried.",
            subcode="batch_not_retryable",
        )
    return default_storage.size(batch.errors_file) > 0


def live_retry(batch: Batch) -> Batch | None:
    return Batch.objects.filter(retry_of=batch).only("uuid", "status").first()


def already_retried(retry: Batch) -> Conflict:
    return Conflict(
        f"This batch was already retried as batch {retry.uuid} ({retry.status}); retry that one, "
        "or delete it first.",
        subcode="batch_already_retried",
    )


def retryable_check(batch: Batch) -> None:
    """Refuses a batch that cannot be retried: not completed or cancelled (or without an errors
    part), already retried, or with every line succeeded."""
    if batch.status not in RETRYABLE or not batch.errors_file:
        raise Conflict(
            f"Only a completed or cancelled batch can be retried; this one is {batch.status}.",
            subcode="batch_not_retryable",
        )
    existing = live_retry(batch)
    if existing is not None:
        raise already_retried(existing)
    if not lines_left(batch):
        raise Conflict("Every line succeeded; there is nothing to retry.", subcode="nothing_to_retry")


def batch_retry(
    *, batch: Batch, user, idempotency_key: str = "", schedule: dict | None = None
) -> tuple[Batch, bool]:
    """A new batch, linked by `retry_of`, over the lines of `batch` that failed or never ran,
    and whether it is new. Creating it follows every rule of batch_create, the caller's
    permissions included, checked before anything is stored.

    A batch has at most one retry (a unique constraint, so parallel requests cannot each
    make one): a second request answers 409 with its id, or, with the `idempotency_key` of
    the request that made it, that retry again."""
    if not may_batch(user, batch.operation, batch.account):
        raise PermissionDenied(f"The role does not allow {batch.operation}.")
    services.idempotency_key_check(idempotency_key)
    # A retry runs at the batch's priority unless told otherwise, and with only the deadline
    # and start time it is given: the batch's own may be what stopped it.
    schedule = {"priority": batch.priority, **(schedule or {})}
    if idempotency_key:
        earlier = services.retry_replay(batch=batch, idempotency_key=idempotency_key, schedule=schedule)
        if earlier is not None:
            return earlier, False
    retryable_check(batch)
    try:
        return services.batch_create(
            account=batch.account,
            user=user,
            handler="",
            operation=batch.operation,
            batch_dict=batch.batch_dict,
            # The budget goes with the lines; a dry run's retry runs them for real.
            error_budget=batch.error_budget,
            # The retried lines are the original lines, ids and echoed fields included.
            id_field=batch.id_field,
            echo_fields=batch.echo_fields,
            idempotency_key=idempotency_key,
            retry_of=batch,
            **schedule,
        )
    except IntegrityError:
        # A parallel request made the retry first: that retry answers.
        if idempotency_key:
            earlier = services.retry_replay(batch=batch, idempotency_key=idempotency_key, schedule=schedule)
            if earlier is not None:
                return earlier, False
        existing = live_retry(batch)
        if existing is None:
            raise
        raise already_retried(existing) from None

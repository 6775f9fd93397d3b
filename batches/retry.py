"""Retrying a batch: a new batch of only the lines that failed or never ran (SPEC section 3)."""

import json
import tempfile
from collections.abc import Iterator

from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import IntegrityError

from batches import pipeline, services
from batches.fileformat import FileUnreadable
from batches.models import Batch, BatchStatus
from batchsite.errors import Conflict

RETRYABLE = frozenset({BatchStatus.COMPLETED, BatchStatus.CANCELLED})


def lines_to_retry(batch: Batch) -> set[int]:
    """Line numbers listed in the errors part: failed lines and lines that never ran."""
    with default_storage.open(batch.errors_file, "rb") as errors:
        return {json.loads(record)["line"] for record in errors if record.strip()}


def retried_records(batch: Batch, wanted: set[int]) -> Iterator[bytes]:
    """The wanted lines' requests, in input order, as JSON Lines."""
    prepared = pipeline.prepared_name_of(batch)
    if prepared and default_storage.exists(prepared):
        with default_storage.open(prepared, "rb") as lines:
            for record in lines:
                number, _, text = record.partition(b"\t")
                if int(number) in wanted:
                    yield text
        return
    # Cancelled before its lines were checked: read them from the input itself. A line that
    # cannot be parsed has no request to retry.
    # A file unreadable from some line on has no request past it (its cancel listed none).
    source, parsed_lines = pipeline.input_lines(batch)
    with source:
        try:
            for parsed in parsed_lines:
                if parsed.line in wanted and parsed.data is not None:
                    yield json.dumps(parsed.data, separators=(",", ":")).encode() + b"\n"
        except FileUnreadable:
            return


def live_retry(batch: Batch) -> Batch | None:
    return Batch.objects.filter(retry_of=batch).only("uuid", "status").first()


def already_retried(retry: Batch) -> Conflict:
    return Conflict(
        f"This batch was already retried as batch {retry.uuid} ({retry.status}); retry that one, "
        "or delete it first.",
        subcode="batch_already_retried",
    )


def batch_retry(*, batch: Batch, user, idempotency_key: str = "") -> tuple[Batch, bool]:
    """A new batch, linked by `retry_of`, over the lines of `batch` that failed or never ran,
    and whether it is new. Creating it follows every rule of batch_create, the caller's
    permissions included, checked before anything is stored.

    A batch has at most one retry (a unique constraint, so parallel requests cannot each
    make one): a second request answers 409 with its id, or, with the `idempotency_key` of
    the request that made it, that retry again."""
    if not user.has_perm(batch.operation, batch.account):
        raise PermissionDenied(f"The role does not allow {batch.operation}.")
    services.idempotency_key_check(idempotency_key)
    if idempotency_key:
        earlier = services.retry_replay(batch=batch, idempotency_key=idempotency_key)
        if earlier is not None:
            return earlier, False
    if batch.status not in RETRYABLE or not batch.errors_file:
        raise Conflict(
            f"Only a completed or cancelled batch can be retried; this one is {batch.status}.",
            subcode="batch_not_retryable",
        )
    existing = live_retry(batch)
    if existing is not None:
        raise already_retried(existing)
    wanted = lines_to_retry(batch)
    if not wanted:
        raise Conflict("Every line succeeded; there is nothing to retry.", subcode="nothing_to_retry")
    upload = retry_upload(batch, user, wanted)
    try:
        retry, created = services.batch_create(
            account=batch.account,
            user=user,
            handler=str(upload.handler),
            operation=batch.operation,
            batch_dict=batch.batch_dict,
            idempotency_key=idempotency_key,
            retry_of=batch,
        )
    except IntegrityError:
        # A parallel request made the retry first: this request's file goes; that retry answers.
        services.upload_invalidate(upload=upload)
        if idempotency_key:
            earlier = services.retry_replay(batch=batch, idempotency_key=idempotency_key)
            if earlier is not None:
                return earlier, False
        existing = live_retry(batch)
        if existing is None:
            raise
        raise already_retried(existing) from None
    except BaseException:
        services.upload_invalidate(upload=upload)
        raise
    if not created:
        # A parallel request with the same key made the retry first.
        services.upload_invalidate(upload=upload)
    return retry, created


def retry_upload(batch: Batch, user, wanted: set[int]):
    """The retried lines, stored as a new upload of the batch's account."""
    with tempfile.TemporaryFile() as retry_file:
        for record in retried_records(batch, wanted):
            retry_file.write(record)
        size = retry_file.tell()
        retry_file.seek(0)
        upload = services.upload_create(account=batch.account, created_by=getattr(user, "account_user", None))
        services.upload_store(
            handler=upload.handler,
            stream=retry_file,
            content_length=size,
            content_type="application/x-ndjson",
        )
    return upload

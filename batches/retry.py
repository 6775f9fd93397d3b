"""Retrying a batch: a new batch of only the lines that failed or never ran (SPEC section 3)."""

import json
import tempfile
from collections.abc import Iterator

from django.core.files.storage import default_storage
from django.db import transaction

from batches import pipeline, services
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
    source, parsed_lines = pipeline.input_lines(batch)
    with source:
        for parsed in parsed_lines:
            if parsed.line in wanted and parsed.data is not None:
                yield json.dumps(parsed.data, separators=(",", ":")).encode() + b"\n"


def batch_retry(*, batch: Batch, user) -> Batch:
    """A new batch, linked by `retry_of`, over the lines of `batch` that failed or never ran.
    Creating it follows every rule of create_batch, the caller's permissions included."""
    if batch.status not in RETRYABLE or not batch.errors_file:
        raise Conflict(
            f"Only a completed or cancelled batch can be retried; this one is {batch.status}.",
            subcode="batch_not_retryable",
        )
    wanted = lines_to_retry(batch)
    if not wanted:
        raise Conflict("Every line succeeded; there is nothing to retry.", subcode="nothing_to_retry")
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
    with transaction.atomic():
        retry, _ = services.batch_create(
            account=batch.account,
            user=user,
            handler=str(upload.handler),
            operation=batch.operation,
            batch_dict=batch.batch_dict,
            # The budget goes with the lines; a dry run's retry runs them for real.
            error_budget=batch.error_budget,
        )
        Batch.objects.filter(pk=retry.pk).update(retry_of=batch)
    return Batch.objects.get(pk=retry.pk)

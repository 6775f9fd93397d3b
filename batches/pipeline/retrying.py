"""A retry's first step (docs/contract.md, section 3): its input is built from the batch it retries, the lines
that failed or never ran in input order, on a worker rather than in the request that made it.

The file is written under a fresh name and published by the transition to `copied`, as the copy
of an upload is: a step that runs twice or dies half-way leaves only an unpublished file."""

import hashlib
import json
from collections.abc import Iterator

from django.core.files.storage import default_storage

from batches.fileformat import FileUnreadable
from batches.files import fresh_batch_file_name, storage_discard, storage_save_spooled, storage_spool
from batches.models import Batch, BatchStatus
from batches.pipeline.faults import StorageReadError
from batches.pipeline.lease import Lease, TickingReader
from batches.pipeline.mixed import MIXED, references_settled
from batches.pipeline.reading import input_lines, input_name_of, prepared_name_of
from batches.pipeline.results import (
    publish_results,
    results_expiry,
    unparsed_not_executed_blocks,
    write_results,
)
from batches.states import batch_transition
from batches.summaries import summary_without_lines
from batchsite.faults import STORAGE_ERRORS

S = BatchStatus
RETRYABLE = frozenset({S.COMPLETED, S.CANCELLED})


def lines_to_retry(batch: Batch, lease: Lease | None = None) -> set[int]:
    """Line numbers listed in the errors part: failed lines and lines that never ran."""
    wanted = set()
    with default_storage.open(batch.errors_file, "rb") as errors:
        for record in errors:
            if lease is not None:
                lease.tick()
            if record.strip():
                wanted.add(json.loads(record)["line"])
    return wanted


def retried_records(batch: Batch, wanted: set[int], lease: Lease | None = None) -> Iterator[bytes]:
    """The wanted lines' requests, in input order, as JSON Lines; a mixed batch's with their
    references to lines not retried resolved (batches.pipeline.mixed.references_settled)."""
    records = requests_of(batch, wanted, lease)
    return references_settled(batch, wanted, records) if batch.operation == MIXED else records


def requests_of(batch: Batch, wanted: set[int], lease: Lease | None = None) -> Iterator[bytes]:
    """The wanted lines' requests as they were sent, in input order, as JSON Lines."""
    prepared = prepared_name_of(batch)
    if prepared and default_storage.exists(prepared):
        with default_storage.open(prepared, "rb") as lines:
            for record in lines:
                if lease is not None:
                    lease.tick()
                number, _, text = record.partition(b"\t")
                if int(number) in wanted:
                    yield text
        return
    # Cancelled before its lines were checked: read them from the input itself. A line that
    # cannot be parsed has no request to retry.
    # A file unreadable from some line on has no request past it (its cancel listed none).
    source, parsed_lines = input_lines(batch, lease)
    with source:
        try:
            for parsed in parsed_lines:
                if parsed.line in wanted and parsed.data is not None:
                    yield json.dumps(parsed.data, separators=(",", ":")).encode() + b"\n"
        except FileUnreadable:
            return


def stored(name: str) -> bool:
    return bool(name) and default_storage.exists(name)


def why_unreadable(original: Batch | None) -> str:
    """Why the retried lines can no longer be read, or "" while they can."""
    if original is None or original.status not in RETRYABLE or original.delete_requested_at:
        return "The batch this one retries was deleted before its lines were read."
    source_stored = stored(prepared_name_of(original)) or stored(input_name_of(original))
    if not (stored(original.errors_file) and source_stored):
        return f"The files of batch {original.pk}, which this one retries, are gone."
    return ""


class RetryUnreadable(Exception):
    """The lines to retry can no longer be read: the original or its files are gone."""


def retry_input_write(batch: Batch, lease: Lease) -> dict:
    """Writes the retry's input under a fresh name; returns the fields that publish it. Raises
    RetryUnreadable when the batch it retries (or its files) went."""
    original = Batch.objects.select_related("upload").filter(pk=batch.retry_of_id).first()
    reason = why_unreadable(original)
    if reason:
        raise RetryUnreadable(reason)
    target = fresh_batch_file_name(account_id=batch.account_id, batch_id=batch.pk, stem="input")
    sha256 = hashlib.sha256()
    try:
        with storage_spool() as spool:
            for record in retried_records(original, lines_to_retry(original, lease), lease):
                spool.write(record)
                sha256.update(record)
            storage_save_spooled(target, spool, TickingReader(spool, lease))
    except (StorageReadError, *STORAGE_ERRORS) as error:
        storage_discard(target)
        # Deleted while it was read: a clear end. Anything else is storage failing: retried.
        original = Batch.objects.select_related("upload").filter(pk=batch.retry_of_id).first()
        reason = why_unreadable(original)
        if reason:
            raise RetryUnreadable(reason) from error
        raise
    except BaseException:
        storage_discard(target)
        raise
    return {"input_file": target, "computed_hash": sha256.hexdigest()}


def step_build_retry_input(batch: Batch, lease: Lease) -> Batch | None:
    try:
        files = retry_input_write(batch, lease)
    except RetryUnreadable as unreadable:
        return batch_transition(
            batch_id=batch.pk,
            to=S.VALIDATION_FAILED,
            allowed_from=[S.COPYING],
            owner=lease.owner,
            note=str(unreadable),
            failure_reason=str(unreadable),
            results_expire_at=results_expiry(),
            summary=summary_without_lines(),
        )
    moved = batch_transition(
        batch_id=batch.pk, to=S.COPIED, allowed_from=[S.COPYING], owner=lease.owner, **files
    )
    if moved is None:
        storage_discard(files["input_file"])
    return moved


def step_finish_unbuilt_cancel(batch: Batch, lease: Lease) -> Batch | None:
    """Stops a retry cancelled before its first step built its input. The input is built now
    and published with the cancel, so its errors part lists every line as not executed and a
    retry of it takes them; with the original's files gone it stops with no lines."""
    try:
        files = retry_input_write(batch, lease)
    except RetryUnreadable:
        files = {}
    # What the listing below reads; published by the cancel's transition.
    batch.input_file = files.get("input_file", "")
    blocks = unparsed_not_executed_blocks(batch, lease) if files else ()
    try:
        results = write_results(batch, blocks, lease)
    except BaseException:
        storage_discard(batch.input_file)
        raise
    moved = publish_results(batch, lease, {**results, **files}, to=S.CANCELLED)
    if moved is None:
        storage_discard(batch.input_file)
    return moved

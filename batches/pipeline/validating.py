"""Validating: every line parsed and checked against the operation's input, with no side effect.

Valid lines go, normalised, into a prepared file (`<line>\\t<json>` per line) cut into chunks
by offset; any invalid line fails the batch with a report of the bad lines. A dry run
(`validate_only`) writes no prepared file and no chunks: its results file, listing every line
as `validate_only`, is written instead and published by the move validating -> completed. Whatever a hostile
line or file does to the parser or the checks ends as that line's failure or the file's
(`validation_failed`), never as a stuck batch.
"""

import logging
import tempfile

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files import File
from django.db import transaction
from rest_framework.exceptions import ValidationError

from batches.fileformat import FileUnreadable
from batches.files import fresh_batch_file_name, storage_discard, storage_save_new
from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline.faults import RETRIED_ERRORS, StorageReadError
from batches.pipeline.lease import Lease, LeaseLost, StepInterrupted, TickingReader
from batches.pipeline.reading import input_lines, prepared_record
from batches.pipeline.results import VALIDATE_ONLY_LINE, result_line, results_expiry
from batches.states import batch_transition
from batchsite import fastjson
from batchsite.errors import describe_exception
from twins.registry import Operation, OperationError, operation_get

logger = logging.getLogger(__name__)
S = BatchStatus


def validate_item(operation: Operation, data: dict):
    """The operation's input check, as the REST view runs it: validated data and None, or None
    and the error the single call would have answered."""
    try:
        return operation.validate_input(data), None
    except (ValidationError, DjangoValidationError) as error:
        return None, OperationError.from_info(describe_exception(error))
    except Exception as error:  # noqa: BLE001 - a hostile line must fail alone, whatever it raises
        logger.warning("checking a %s line raised %s", operation.name, type(error).__name__)
        return None, OperationError(
            400, "malformed_body", f"The line cannot be read as a request ({type(error).__name__})."
        )


class ChunkCutter:
    """Cuts the prepared file into chunks of BATCH_CHUNK_LINES lines while it is written."""

    def __init__(self, batch_id):
        self.batch_id = batch_id
        self.chunks: list[Chunk] = []
        self.offset = 0

    def add(self, line: int, size: int) -> None:
        if not self.chunks or self.chunks[-1].line_count == settings.BATCH_CHUNK_LINES:
            self.chunks.append(
                Chunk(
                    batch_id=self.batch_id,
                    index=len(self.chunks),
                    first_line=line,
                    last_line=line,
                    start_offset=self.offset,
                    end_offset=self.offset,
                    line_count=0,
                )
            )
        self.offset += size
        chunk = self.chunks[-1]
        chunk.last_line = line
        chunk.end_offset = self.offset
        chunk.line_count += 1


def step_validate(batch: Batch, lease: Lease) -> Batch | None:
    operation = operation_get(batch.operation)
    cutter = ChunkCutter(batch.pk)
    total = invalid = 0
    unreadable = ""
    with tempfile.TemporaryFile() as prepared, tempfile.TemporaryFile() as report:
        source, lines = input_lines(batch, lease)
        with source:
            try:
                for parsed in lines:
                    total += 1
                    lease.tick()
                    if parsed.data is None:
                        error = OperationError(400, parsed.error_subcode, parsed.error)
                    else:
                        _, error = validate_item(operation, parsed.data)
                    if error is not None:
                        invalid += 1
                        if invalid <= settings.VALIDATION_REPORT_MAX_LINES:
                            report.write(result_line(parsed.line, error).encode())
                        continue
                    if invalid:
                        continue
                    if batch.validate_only:
                        prepared.write((VALIDATE_ONLY_LINE % parsed.line).encode())
                        continue
                    record = prepared_record(parsed.line, fastjson.dumps(parsed.data))
                    prepared.write(record)
                    cutter.add(parsed.line, len(record))
            except FileUnreadable as error:
                unreadable = str(error)
            except (StorageReadError, LeaseLost, StepInterrupted, *RETRIED_ERRORS):
                raise
            except Exception as error:  # noqa: BLE001 - a hostile file fails validation, it does not wedge
                logger.warning("batch %s: reading the file raised %r", batch.pk, error)
                unreadable = f"The file cannot be read past line {total}: {type(error).__name__}."
        if unreadable or invalid:
            return validation_failed(batch, lease, report, total=total, invalid=invalid, reason=unreadable)
        prepared.seek(0)
        if batch.validate_only:
            return dry_run_completed(batch, lease, prepared, total=total)
        prepared_name = fresh_batch_file_name(
            account_id=batch.account_id, batch_id=batch.pk, stem="prepared", suffix=".jsonl"
        )
        storage_save_new(prepared_name, File(TickingReader(prepared, lease), name="prepared.jsonl"))
    with transaction.atomic():
        moved = batch_transition(
            batch_id=batch.pk,
            to=S.PROCESSING,
            allowed_from=[S.VALIDATING],
            owner=lease.owner,
            total=total,
            prepared_file=prepared_name,
        )
        if moved is not None:
            Chunk.objects.bulk_create(cutter.chunks, batch_size=1000)
    if moved is None:
        storage_discard(prepared_name)
    return moved


def dry_run_completed(batch: Batch, lease: Lease, results, *, total: int) -> Batch | None:
    """Publishes a dry run's results (every line validate_only) and completes it: nothing ran.
    Every line is listed there and none ran, so the errors part is the same file and a retry
    of a dry run runs every line."""
    return publish_report(
        batch,
        lease,
        results,
        stem="results",
        to=S.COMPLETED,
        note="validate_only: every line is valid; nothing was executed",
        total=total,
    )


def validation_failed(
    batch: Batch, lease: Lease, report, *, total: int, invalid: int, reason: str
) -> Batch | None:
    if not reason:
        listed = min(invalid, settings.VALIDATION_REPORT_MAX_LINES)
        reason = f"{invalid} of {total} lines are invalid"
        reason += f"; the first {listed} are listed." if listed < invalid else "; each is listed."
    return publish_report(
        batch, lease, report, stem="errors", to=S.VALIDATION_FAILED, note=reason, failure_reason=reason
    )


def publish_report(
    batch: Batch, lease: Lease, spool, *, stem: str, to: str, note: str, **changes
) -> Batch | None:
    """Ends validation with one file that is both the results and the errors part, published
    by the fenced transition; a step that lost its lease deletes it."""
    spool.seek(0)
    name = fresh_batch_file_name(account_id=batch.account_id, batch_id=batch.pk, stem=stem, suffix=".jsonl")
    storage_save_new(name, File(TickingReader(spool, lease), name=f"{stem}.jsonl"))
    moved = batch_transition(
        batch_id=batch.pk,
        to=to,
        allowed_from=[S.VALIDATING],
        owner=lease.owner,
        note=note,
        results_file=name,
        errors_file=name,
        results_expire_at=results_expiry(),
        **changes,
    )
    if moved is None:
        storage_discard(name)
    return moved

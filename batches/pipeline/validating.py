"""Validating: every line parsed and checked against the operation's input, with no side effect.

Valid lines go, normalised, into a prepared file (`<line>\\t<json>` per line) cut into chunks
by offset; any invalid line fails the batch with a report of the bad lines. A dry run
(`validate_only`) writes no prepared file and no chunks: its results file, listing every line
as `validate_only`, is written instead and published by the move validating -> completed. Whatever a hostile
line or file does to the parser or the checks ends as that line's failure or the file's
(`validation_failed`), never as a stuck batch.

A large uncompressed JSON Lines file (BATCH_VALIDATE_PARALLEL_MIN_LINES lines or more) is
validated in parallel instead: the leased step only cuts it into chunks at line breaks (one
pass, no parsing); any chunk worker checks a chunk (`chunk_check`) and records its outcome on
it, touching nothing else; when every chunk is checked, the leased step runs again and merges
them (`chunks_merge`) into the same outcome the single pass gives - the same report, the same
dry-run results - or moves the batch to processing with the checked chunks as its chunks. No
line runs before every line is valid.
"""

import io
import logging
import tempfile

from django.conf import settings
from django.core.files import File
from django.db import transaction

from batches.fileformat import (
    FileUnreadable,
    LineRange,
    ParsedLine,
    cut_json_lines,
    default_limits,
    parse_json_lines_at,
)
from batches.files import fresh_batch_file_name, storage_discard, storage_save_new
from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline.faults import StorageReadError
from batches.pipeline.lease import Lease, LeaseLost, StepInterrupted, TickingReader
from batches.pipeline.reading import StorageSource, input_lines, input_name_of, prepared_record
from batches.pipeline.results import (
    NOT_EXECUTED,
    VALIDATE_ONLY,
    VALIDATE_ONLY_LINE,
    CountingReader,
    result_line,
    results_expiry,
)
from batches.states import batch_transition
from batches.storage import read_range
from batches.summaries import FileDigest, SubcodeTally, summary_final
from batchsite import fastjson
from batchsite.errors import VALIDATION_ERRORS, describe_exception
from batchsite.faults import RETRIED_ERRORS
from operating.services import usage_admit_batch_lines
from twins.registry import Operation, OperationError, operation_get

logger = logging.getLogger(__name__)
S = BatchStatus


def validate_item(operation: Operation, data: dict):
    """The operation's input check, as the REST view runs it: validated data and None, or None
    and the error the single call would have answered."""
    try:
        return operation.validate_input(data), None
    except VALIDATION_ERRORS as error:
        return None, OperationError.from_info(describe_exception(error))
    except Exception as error:  # noqa: BLE001 - a hostile line must fail alone, whatever it raises
        logger.warning("checking a %s line raised %s", operation.name, type(error).__name__)
        return None, OperationError(
            400, "malformed_body", f"The line cannot be read as a request ({type(error).__name__})."
        )


def line_error(operation: Operation, parsed: ParsedLine) -> OperationError | None:
    """Why the line cannot run, or None."""
    if parsed.data is None:
        return OperationError(400, parsed.error_subcode, parsed.error)
    return validate_item(operation, parsed.data)[1]


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
    """Validates the batch in one pass, or cuts it into chunks to check in parallel, or,
    once those are all checked, merges their outcome."""
    if Chunk.objects.filter(batch_id=batch.pk).exists():
        return chunks_merge(batch, lease)
    ranges = input_ranges(batch, lease)
    if ranges is None:
        return validate_whole(batch, lease)
    chunks_cut(batch, lease, ranges)
    return None


def lines_check(
    batch: Batch,
    lease: Lease,
    operation: Operation,
    cutter: ChunkCutter,
    *,
    prepared,
    report,
    subcodes: SubcodeTally,
) -> tuple[int, int, str]:
    """Reads and checks every line of the input in one pass: the valid ones go to `prepared`
    (cut into chunks by `cutter`) until a line is invalid, the first invalid ones to `report`;
    every line to `subcodes`, an invalid one under its error's, a valid one as never run.
    Returns the count of lines, the count of invalid lines, and why the file could not be
    read past some line ("" when it could)."""
    total = invalid = 0
    unreadable = ""
    never_ran = (VALIDATE_ONLY if batch.validate_only else NOT_EXECUTED)["subcode"]
    source, lines = input_lines(batch, lease)
    with source:
        try:
            for parsed in lines:
                total += 1
                lease.tick()
                error = line_error(operation, parsed)
                if error is not None:
                    invalid += 1
                    subcodes.add(error.subcode, parsed.line)
                    if invalid <= settings.VALIDATION_REPORT_MAX_LINES:
                        report.write(result_line(parsed.line, error).encode())
                    continue
                subcodes.add(never_ran, parsed.line)
                if invalid:
                    continue
                if batch.validate_only:
                    prepared.write((VALIDATE_ONLY_LINE % parsed.line).encode())
                    continue
                record = prepared_record(parsed.line, fastjson.dumps(parsed.data)).encode()
                prepared.write(record)
                cutter.add(parsed.line, len(record))
        except FileUnreadable as error:
            unreadable = str(error)
        except (StorageReadError, LeaseLost, StepInterrupted, *RETRIED_ERRORS):
            raise
        except Exception as error:  # noqa: BLE001 - a hostile file fails validation, it does not wedge
            logger.warning("batch %s: reading the file raised %r", batch.pk, error)
            unreadable = f"The file cannot be read past line {total}: {type(error).__name__}."
    return total, invalid, unreadable


def validate_whole(batch: Batch, lease: Lease) -> Batch | None:
    operation = operation_get(batch.operation)
    cutter = ChunkCutter(batch.pk)
    subcodes = SubcodeTally()
    with tempfile.TemporaryFile() as prepared, tempfile.TemporaryFile() as report:
        total, invalid, unreadable = lines_check(
            batch, lease, operation, cutter, prepared=prepared, report=report, subcodes=subcodes
        )
        if unreadable or invalid:
            return validation_failed(
                batch, lease, report, total=total, invalid=invalid, reason=unreadable, subcodes=subcodes
            )
        prepared.seek(0)
        if batch.validate_only:
            return dry_run_completed(batch, lease, prepared, total=total, subcodes=subcodes)
        prepared_name = fresh_batch_file_name(
            account_id=batch.account_id, batch_id=batch.pk, stem="prepared", suffix=".jsonl"
        )
        storage_save_new(prepared_name, File(TickingReader(prepared, lease), name="prepared.jsonl"))
    with transaction.atomic():
        moved = processing_start(batch, lease, total=total, prepared_file=prepared_name)
        if moved is not None and moved.status == S.PROCESSING:
            Chunk.objects.bulk_create(cutter.chunks, batch_size=1000)
    if moved is None or moved.status != S.PROCESSING:
        storage_discard(prepared_name)
    return moved


def processing_start(batch: Batch, lease: Lease, *, total: int, **changes) -> Batch | None:
    """Moves a validated batch to processing, or, when its lines would take the account past
    its daily quota, stops it as a cancel does (reason quota_exceeded: every line listed as
    never run). Inside the caller's transaction, which also writes the chunks."""
    refusal = usage_admit_batch_lines(account_id=batch.account_id, lines=total)
    if refusal:
        return batch_transition(
            batch_id=batch.pk,
            to=S.CANCEL,
            allowed_from=[S.VALIDATING],
            owner=lease.owner,
            note=refusal,
            failure_reason=refusal,
        )
    return batch_transition(
        batch_id=batch.pk,
        to=S.PROCESSING,
        allowed_from=[S.VALIDATING],
        owner=lease.owner,
        total=total,
        **changes,
    )


def input_ranges(batch: Batch, lease: Lease) -> list[LineRange] | None:
    """The input cut into chunks' line ranges, when it is worth validating in parallel and
    can be cut without parsing; else None."""
    content_type = batch.upload.content_type if batch.upload else ""
    with StorageSource(input_name_of(batch), lease) as source:
        ranges = cut_json_lines(
            source,
            content_type=content_type,
            lines_per_range=settings.BATCH_CHUNK_LINES,
            max_range_bytes=settings.BATCH_CHUNK_LINES * (settings.BATCH_LINE_MAX_BYTES + 2),
            limits=default_limits(settings.BATCH_LINE_MAX_BYTES),
        )
    if (
        not ranges
        or ranges[-1].first_line + ranges[-1].line_count <= settings.BATCH_VALIDATE_PARALLEL_MIN_LINES
    ):
        return None
    return ranges


def chunks_cut(batch: Batch, lease: Lease, ranges: list[LineRange]) -> None:
    """Records the chunks to check, while the lease is still this step's."""
    with transaction.atomic():
        held = Batch.objects.select_for_update().filter(
            pk=batch.pk, status=S.VALIDATING, lease_owner=lease.owner
        )
        if not held.exists():
            return
        Chunk.objects.bulk_create(
            (
                Chunk(
                    batch_id=batch.pk,
                    index=index,
                    first_line=cut.first_line,
                    last_line=cut.first_line + cut.line_count - 1,
                    start_offset=cut.start,
                    end_offset=cut.end,
                    line_count=cut.line_count,
                    validated=False,
                )
                for index, cut in enumerate(ranges)
            ),
            batch_size=1000,
        )
    logger.info("batch %s: validating %d chunks in parallel", batch.pk, len(ranges))


def chunk_check(operation: Operation, input_file: str, chunk: Chunk) -> dict:
    """Checks one chunk's lines of the batch's copied input exactly as the single pass does;
    returns the chunk's fields that record the outcome: its valid lines (when all are valid)
    or its invalid lines' errors (the first VALIDATION_REPORT_MAX_LINES), its lines by subcode
    (the valid ones as never run, should another chunk fail the batch), and where the file
    became unreadable."""
    block = read_range(input_file, chunk.start_offset, chunk.end_offset)
    lines = parse_json_lines_at(
        io.BytesIO(block), first_line=chunk.first_line, max_line_bytes=settings.BATCH_LINE_MAX_BYTES
    )
    records: list[str] = []
    report: list[str] = []
    numbers: list[int] = []
    subcodes = SubcodeTally()
    invalid = 0
    unreadable = ""
    try:
        for parsed in lines:
            error = line_error(operation, parsed)
            if error is not None:
                invalid += 1
                subcodes.add(error.subcode, parsed.line)
                if invalid <= settings.VALIDATION_REPORT_MAX_LINES:
                    report.append(result_line(parsed.line, error))
            else:
                numbers.append(parsed.line)
                if not invalid:
                    records.append(prepared_record(parsed.line, fastjson.dumps(parsed.data)))
    except FileUnreadable as error:
        unreadable = str(error)
    subcodes.add_lines(NOT_EXECUTED["subcode"], numbers)
    return {
        "prepared": "" if invalid else "".join(records),
        "results": "".join(report),
        "subcodes": subcodes.counts,
        "invalid": invalid,
        "unreadable": unreadable,
        "line_count": len(numbers),
        "first_line": numbers[0] if numbers else chunk.first_line,
        "last_line": numbers[-1] if numbers else chunk.first_line - 1,
    }


def chunks_merge(batch: Batch, lease: Lease) -> Batch | None:
    """Once every chunk is checked: the batch fails validation with the chunks' errors in line
    order, or a dry run completes, or the batch moves to processing with its chunks."""
    checked = Chunk.objects.filter(batch_id=batch.pk).order_by("index")
    if checked.filter(validated=False).exists():
        return None
    total = invalid = 0
    reason = ""
    last_index = None
    subcodes = SubcodeTally()
    for index, line_count, bad, unreadable, counts in checked.values_list(
        "index", "line_count", "invalid", "unreadable", "subcodes"
    ):
        total += line_count + bad
        invalid += bad
        subcodes.merge(counts or {})
        last_index = index
        if unreadable:
            reason = unreadable
            break
    if reason or invalid:
        with tempfile.TemporaryFile() as report:
            chunk_reports_write(checked.filter(index__lte=last_index), report, lease)
            moved = validation_failed(
                batch, lease, report, total=total, invalid=invalid, reason=reason, subcodes=subcodes
            )
    elif batch.validate_only:
        moved = dry_run_merge(batch, lease, checked, total=total)
    else:
        with transaction.atomic():
            moved = processing_start(batch, lease, total=total)
            if moved is not None and moved.status == S.PROCESSING:
                checked.filter(line_count=0).update(done=True)
    return moved


def dry_run_merge(batch: Batch, lease: Lease, checked, *, total: int) -> Batch | None:
    """A dry run's results from its checked chunks: every valid line as validate_only."""
    subcodes = SubcodeTally()
    with tempfile.TemporaryFile() as results:
        for records in checked.values_list("prepared", flat=True).iterator(chunk_size=50):
            lease.tick()
            numbers = [int(record.partition("\t")[0]) for record in records.splitlines()]
            results.write("".join(VALIDATE_ONLY_LINE % number for number in numbers).encode())
            subcodes.add_lines(VALIDATE_ONLY["subcode"], numbers)
        return dry_run_completed(batch, lease, results, total=total, subcodes=subcodes)


def chunk_reports_write(checked, report, lease: Lease) -> None:
    """The chunks' error lines in line order, the first VALIDATION_REPORT_MAX_LINES of them."""
    room = settings.VALIDATION_REPORT_MAX_LINES
    for lines in checked.exclude(results="").values_list("results", flat=True).iterator(chunk_size=50):
        lease.tick()
        kept = lines.splitlines(keepends=True)[:room]
        report.write("".join(kept).encode())
        room -= len(kept)
        if not room:
            return


def dry_run_completed(
    batch: Batch, lease: Lease, results, *, total: int, subcodes: SubcodeTally
) -> Batch | None:
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
        line_count=total,
        failed=0,
        subcodes=subcodes,
        total=total,
    )


def validation_failed(
    batch: Batch, lease: Lease, report, *, total: int, invalid: int, reason: str, subcodes: SubcodeTally
) -> Batch | None:
    if not reason:
        listed = min(invalid, settings.VALIDATION_REPORT_MAX_LINES)
        reason = f"{invalid} of {total} lines are invalid"
        reason += f"; the first {listed} are listed." if listed < invalid else "; each is listed."
    return publish_report(
        batch,
        lease,
        report,
        stem="errors",
        to=S.VALIDATION_FAILED,
        note=reason,
        line_count=total,
        failed=invalid,
        subcodes=subcodes,
        failure_reason=reason,
    )


def publish_report(
    batch: Batch,
    lease: Lease,
    spool,
    *,
    stem: str,
    to: str,
    note: str,
    line_count: int,
    failed: int,
    subcodes: SubcodeTally,
    **changes,
) -> Batch | None:
    """Ends validation with one file that is both the results and the errors part, published
    by the fenced transition with the batch's summary (nothing ran: every line that did not fail
    is not_executed); a step that lost its lease deletes it. The checked chunks (when
    validation ran in parallel) go in the same transaction: nothing runs them, and whoever
    sees the batch ended sees them gone."""
    spool.seek(0)
    name = fresh_batch_file_name(account_id=batch.account_id, batch_id=batch.pk, stem=stem, suffix=".jsonl")
    # Counted as storage reads it to store it: exactly the bytes a download serves.
    digest = FileDigest()
    storage_save_new(name, File(CountingReader(spool, lease, digest), name=f"{stem}.jsonl"))
    summary = summary_final(
        succeeded=0,
        failed=failed,
        not_executed=line_count - failed,
        subcodes=subcodes,
        results=digest,
        errors=digest,
    )
    with transaction.atomic():
        moved = batch_transition(
            batch_id=batch.pk,
            to=to,
            allowed_from=[S.VALIDATING],
            owner=lease.owner,
            note=note,
            results_file=name,
            errors_file=name,
            results_expire_at=results_expiry(),
            summary=summary,
            **changes,
        )
        if moved is not None:
            Chunk.objects.filter(batch_id=batch.pk).delete()
    if moved is None:
        storage_discard(name)
    return moved

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
dry-run results - or moves the batch to processing with the checked chunks as its chunks (a
mixed batch's cut again where no reference crosses, `mixed_chunks_merge`). No line runs
before every line is valid.
"""

import bisect
import io
import logging
import tempfile
from collections.abc import Iterator

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
from batches.pipeline.correlation import (
    ID_BLOCK_LINES,
    Correlation,
    duplicate_error,
    duplicates_between,
    duplicates_exist,
    line_ids_forget,
    line_ids_record,
)
from batches.pipeline.faults import StorageReadError
from batches.pipeline.lease import Lease, LeaseLost, StepInterrupted, TickingReader
from batches.pipeline.mixed import MIXED, MixedCheck, creator_actions, named_lines, names_forget
from batches.pipeline.reading import StorageSource, input_lines, input_name_of, prepared_record
from batches.pipeline.results import (
    NOT_EXECUTED,
    VALIDATE_ONLY,
    CountingReader,
    never_ran_line,
    result_line,
    results_expiry,
)
from batches.states import batch_transition
from batches.storage import read_range
from batches.summaries import FileDigest, SubcodeTally, summary_final
from batchsite import fastjson
from batchsite.faults import RETRIED_ERRORS
from operating.services import usage_admit_batch_lines
from twins.registry import Operation, OperationError, operation_get

logger = logging.getLogger(__name__)
S = BatchStatus


def line_error(
    operation: Operation | None, parsed: ParsedLine, correlation: Correlation | None = None
) -> OperationError | None:
    """Why the line cannot run on its own, or None; with no operation (a mixed line, which
    `MixedCheck` checks), only whether it parses and its id."""
    if parsed.data is None:
        return OperationError(400, parsed.error_subcode, parsed.error)
    if operation is None:
        return correlation and correlation.id_error(parsed.data)
    if correlation is None:
        return operation.checked(parsed.data)[1]
    return correlation.id_error(parsed.data) or operation.checked(correlation.request(parsed.data))[1]


Checked = tuple[ParsedLine, OperationError | None, dict | None, tuple[int, ...]]
NO_REPEATS: dict[int, int] = {}


class IdCheck:
    """How a pass over lines of a batch with an id field treats their ids: whether it records
    them, and which lines it takes as repeating an earlier line's id (`repeats(first, last)`:
    line -> the first line with that id)."""

    def __init__(self, batch_id, *, record: bool, repeats):
        self.batch_id = batch_id
        self.record = record
        self.repeats = repeats

    @classmethod
    def single_pass(cls, batch_id) -> "IdCheck":
        """Every earlier line has been read: the database knows each repeat at once."""
        return cls(
            batch_id, record=True, repeats=lambda first, last: duplicates_between(batch_id, first, last)
        )


def line_blocks(lines) -> Iterator[list[ParsedLine]]:
    """The lines, ID_BLOCK_LINES at a time. When reading fails, the lines read before the fault
    come first, then the fault is raised, as it would be line by line."""
    block: list[ParsedLine] = []
    lines = iter(lines)
    while True:
        try:
            parsed = next(lines, None)
        except Exception:
            if block:
                yield block
            raise
        if parsed is None:
            break
        block.append(parsed)
        if len(block) == ID_BLOCK_LINES:
            yield block
            block = []
    if block:
        yield block


def lines_checked_alone(operation: Operation, lines, correlation: Correlation | None) -> Iterator[Checked]:
    """`lines_checked` of lines checked each on its own (no ids, no references). Without
    correlation, an operation with a set executor has each line written to the prepared file
    as validated, so that the set path runs it as it is (twins.registry.Operation)."""
    keeps_validated = correlation is None and operation.set_executor is not None
    for parsed in lines:
        if keeps_validated and parsed.data is not None:
            validated, error = operation.checked(parsed.data)
            if error is None:
                parsed.data = validated
            yield parsed, error, None, ()
        else:
            error = line_error(operation, parsed, correlation)
            yield parsed, error, correlation and correlation.tag(parsed.data), ()


def lines_checked(
    operation: Operation | None,
    lines,
    correlation: Correlation | None,
    ids: IdCheck | None,
    mixed: MixedCheck | None = None,
) -> Iterator[Checked]:
    """Each line with why it cannot run (or None), what its result line carries (None for a
    batch without correlation) and what its references point to (a mixed batch's;
    `operation` is None for one: see `MixedCheck`). A batch with an id field or mixed
    operations is checked a block at a time: the block's ids and names are recorded together,
    its repeats and references found by one query each."""
    if mixed is None and (correlation is None or not correlation.id_field):
        yield from lines_checked_alone(operation, lines, correlation)
        return
    for block in line_blocks(lines):
        tags = [correlation.tag(parsed.data) if correlation else None for parsed in block]
        repeats = NO_REPEATS
        if correlation is not None and correlation.id_field:
            if ids.record:
                recorded = zip((parsed.line for parsed in block), (tag["id"] for tag in tags), strict=True)
                line_ids_record(ids.batch_id, [(line, key) for line, key in recorded if key is not None])
            repeats = ids.repeats(block[0].line, block[-1].line)
        checks = None
        if mixed is not None:
            checks = mixed.block([(parsed.line, mixed_request(parsed, correlation)) for parsed in block])
        for index, (parsed, tag) in enumerate(zip(block, tags, strict=True)):
            referred = ()
            if checks:
                error, referred = checks[index]
                error = error or line_error(None, parsed, correlation)
            else:
                error = line_error(operation, parsed, correlation)
            if error is None and parsed.line in repeats:
                error = duplicate_error(tag["id"], repeats[parsed.line])
            yield parsed, error, tag, referred


def mixed_request(parsed: ParsedLine, correlation: Correlation | None):
    """The mixed line as its operation sees it, or None when it is refused as a line (it
    cannot be parsed, its id is missing or invalid)."""
    if parsed.data is None or (correlation is not None and correlation.id_error(parsed.data)):
        return None
    return correlation.request(parsed.data) if correlation else parsed.data


class ChunkCutter:
    """Cuts the prepared file into chunks of BATCH_CHUNK_LINES lines while it is written. A
    mixed batch's chunk grows past that (up to twice) while lines refer into it, so that a
    chunk waits on another only where that cannot be helped; each chunk counts the earlier
    chunks its lines refer to (`waits`) and lists on each the chunks that wait on it."""

    def __init__(self, batch_id):
        self.batch_id = batch_id
        self.chunks: list[Chunk] = []
        self.first_lines: list[int] = []
        self.needed: set[int] = set()
        self.offset = 0

    def full(self, referred: tuple[int, ...]) -> bool:
        chunk = self.chunks[-1]
        size = settings.BATCH_CHUNK_LINES
        if chunk.line_count < size:
            return False
        return chunk.line_count >= 2 * size or all(line < chunk.first_line for line in referred)

    def add(self, line: int, size: int, referred: tuple[int, ...] = ()) -> None:
        if not self.chunks or self.full(referred):
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
            self.first_lines.append(line)
            self.needed = set()
        self.offset += size
        chunk = self.chunks[-1]
        chunk.last_line = line
        chunk.end_offset = self.offset
        chunk.line_count += 1
        for target in referred:
            if target < chunk.first_line:
                self.wait_on(chunk, bisect.bisect_right(self.first_lines, target) - 1)

    def wait_on(self, chunk: Chunk, index: int) -> None:
        if index in self.needed:
            return
        self.needed.add(index)
        chunk.waits += 1
        needed = self.chunks[index]
        needed.unblocks = [*(needed.unblocks or []), chunk.index]


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
    correlation = Correlation.of(batch)
    source, lines = input_lines(batch, lease)
    with source:
        try:
            mixed = MixedCheck(batch, creator_actions(batch)[1]) if batch.operation == MIXED else None
            for parsed, error, tag, referred in lines_checked(
                operation, lines, correlation, IdCheck.single_pass(batch.pk), mixed
            ):
                total += 1
                lease.tick()
                if error is not None:
                    invalid += 1
                    subcodes.add(error.subcode, parsed.line)
                    if invalid <= settings.VALIDATION_REPORT_MAX_LINES:
                        report.write(result_line(parsed.line, error, tag).encode())
                    continue
                subcodes.add(never_ran, parsed.line)
                if invalid:
                    continue
                if batch.validate_only:
                    prepared.write(never_ran_line(parsed.line, VALIDATE_ONLY, tag).encode())
                    continue
                record = prepared_record(parsed.line, fastjson.dumps(parsed.data)).encode()
                prepared.write(record)
                cutter.add(parsed.line, len(record), referred)
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
        return processing_start_prepared(batch, lease, prepared, cutter, total=total)


def processing_start_prepared(
    batch: Batch, lease: Lease, prepared, cutter: ChunkCutter, *, total: int
) -> Batch | None:
    """Stores the prepared file and moves the batch to processing with the chunks `cutter`
    cut from it, in place of any chunks it was checked in."""
    prepared_name = fresh_batch_file_name(
        account_id=batch.account_id, batch_id=batch.pk, stem="prepared", suffix=".jsonl"
    )
    storage_save_new(prepared_name, File(TickingReader(prepared, lease), name="prepared.jsonl"))
    with transaction.atomic():
        moved = processing_start(batch, lease, total=total, prepared_file=prepared_name)
        if moved is not None and moved.status == S.PROCESSING:
            Chunk.objects.filter(batch_id=batch.pk).delete()
            Chunk.objects.bulk_create(cutter.chunks, batch_size=1000)
    if moved is None or moved.status != S.PROCESSING:
        storage_discard(prepared_name)
    return moved


def processing_start(batch: Batch, lease: Lease, *, total: int, **changes) -> Batch | None:
    """Moves a validated batch to processing, or, when its lines would take the account past
    its daily quota, stops it as a cancel does (reason quota_exceeded: every line listed as
    never run). Either way validation has ended and the ids it recorded go. Inside the
    caller's transaction, which also writes the chunks."""
    refusal = usage_admit_batch_lines(account_id=batch.account_id, lines=total)
    if refusal:
        moved = batch_transition(
            batch_id=batch.pk,
            to=S.CANCEL,
            allowed_from=[S.VALIDATING],
            owner=lease.owner,
            note=refusal,
            failure_reason=refusal,
        )
    else:
        moved = batch_transition(
            batch_id=batch.pk,
            to=S.PROCESSING,
            allowed_from=[S.VALIDATING],
            owner=lease.owner,
            total=total,
            **changes,
        )
    if moved is not None:
        line_ids_forget(batch.pk)
    return moved


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


def chunk_check(
    operation: Operation,
    input_file: str,
    chunk: Chunk,
    correlation: Correlation | None = None,
    ids: IdCheck | None = None,
    mixed: MixedCheck | None = None,
) -> dict:
    """Checks one chunk's lines of the batch's copied input exactly as the single pass does
    (but for repeated ids, which only `ids` may know); returns the chunk's fields that record
    the outcome: its valid lines (when all are valid) or its invalid lines' errors (the first
    VALIDATION_REPORT_MAX_LINES), its lines by subcode (the valid ones as never run, should
    another chunk fail the batch), and where the file became unreadable."""
    block = read_range(input_file, chunk.start_offset, chunk.end_offset)
    return block_check(operation, block, chunk.first_line, correlation, ids, mixed)


def block_check(
    operation: Operation,
    block: bytes,
    first_line: int,
    correlation: Correlation | None,
    ids: IdCheck | None,
    mixed: MixedCheck | None = None,
) -> dict:
    """`chunk_check` of the chunk's bytes, its first line numbered `first_line`; of a mixed
    batch's chunk (`mixed`, checking the chunk only), also what its lines refer to."""
    lines = parse_json_lines_at(
        io.BytesIO(block), first_line=first_line, max_line_bytes=settings.BATCH_LINE_MAX_BYTES
    )
    records: list[str] = []
    report: list[str] = []
    numbers: list[int] = []
    subcodes = SubcodeTally()
    invalid = 0
    unreadable = ""
    referring: list[list] = []
    try:
        for parsed, error, tag, referred in lines_checked(operation, lines, correlation, ids, mixed):
            if error is not None:
                invalid += 1
                subcodes.add(error.subcode, parsed.line)
                if invalid <= settings.VALIDATION_REPORT_MAX_LINES:
                    report.append(result_line(parsed.line, error, tag))
            else:
                numbers.append(parsed.line)
                if not invalid:
                    records.append(prepared_record(parsed.line, fastjson.dumps(parsed.data)))
                    if referred:
                        lines_in = [target for target in referred if isinstance(target, int)]
                        names = [target for target in referred if isinstance(target, str)]
                        referring.append([parsed.line, lines_in, names])
    except FileUnreadable as error:
        unreadable = str(error)
    subcodes.add_lines(NOT_EXECUTED["subcode"], numbers)
    references = None if mixed is None else {"lines": referring, "repeated": mixed.repeated}
    return {
        "references": references,
        "prepared": "" if invalid else "".join(records),
        "results": "".join(report),
        "subcodes": subcodes.counts,
        "invalid": invalid,
        "unreadable": unreadable,
        "line_count": len(numbers),
        "first_line": numbers[0] if numbers else first_line,
        "last_line": numbers[-1] if numbers else first_line - 1,
    }


def chunk_ids_check(batch_id) -> IdCheck:
    """A chunk checked by a chunk worker records its ids; which repeat an earlier line's is
    known only once every chunk is checked (`chunks_merge`)."""
    return IdCheck(batch_id, record=True, repeats=lambda first, last: NO_REPEATS)


def chunks_merge(batch: Batch, lease: Lease) -> Batch | None:
    """Once every chunk is checked: the batch fails validation with the chunks' errors in line
    order, or a dry run completes, or the batch moves to processing with its chunks."""
    checked = Chunk.objects.filter(batch_id=batch.pk).order_by("index")
    if checked.filter(validated=False).exists():
        return None
    if batch.operation == MIXED:
        return mixed_chunks_merge(batch, lease, checked)
    if batch.id_field and duplicates_exist(batch.pk):
        repeats_mark(batch, lease, checked)
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


def mixed_chunks_merge(batch: Batch, lease: Lease, checked) -> Batch | None:
    """A mixed batch's checked chunks, merged: when every line is valid, every name is one
    line's and every reference to a name defined before its chunk points to an earlier line,
    the chunks to run are cut again from the checked lines as the single pass cuts them (a
    chunk grows while lines refer into it; one that must refer back waits), and the batch moves
    to processing (a dry run completes). Otherwise the file is checked again in one pass,
    which names each line at fault as it always does: a file with an error costs a second
    pass, a valid one none."""
    if (batch.id_field and duplicates_exist(batch.pk)) or checked.exclude(invalid=0, unreadable="").exists():
        return validate_again_whole(batch, lease)
    cutter = ChunkCutter(batch.pk)
    with tempfile.TemporaryFile() as prepared:
        total = checked_lines_cut(batch.pk, lease, checked, prepared, cutter)
        if total is not None and batch.validate_only:
            return dry_run_merge(batch, lease, checked, total=total)
        if total is not None:
            prepared.seek(0)
            return processing_start_prepared(batch, lease, prepared, cutter, total=total)
    return validate_again_whole(batch, lease)


def checked_lines_cut(batch_id, lease: Lease, checked, prepared, cutter: ChunkCutter) -> int | None:
    """Writes the checked chunks' lines to `prepared`, cut into the chunks to run by
    `cutter`; returns how many, or None as soon as a chunk's names do not check out."""
    total = 0
    for records, references, line_count in checked.values_list(
        "prepared", "references", "line_count"
    ).iterator(chunk_size=20):
        lease.tick()
        referred = chunk_references_resolved(batch_id, references)
        if referred is None:
            return None
        total += line_count
        # Bytes: str.splitlines would also cut at the separators JSON leaves unescaped.
        for record in records.encode().splitlines(keepends=True):
            line = int(record[: record.index(b"\t")])
            prepared.write(record)
            cutter.add(line, len(record), referred.get(line, ()))
    return total


def chunk_references_resolved(batch_id, references: dict) -> dict[int, list[int]] | None:
    """The lines each line of a checked mixed chunk refers to, the names defined before the
    chunk looked up; None when a name of the chunk is another line's too, or a name it refers
    to is no earlier line's."""
    if references["repeated"]:
        return None
    outside = named_lines(batch_id, {name for _, _, names in references["lines"] for name in names})
    referred = {}
    for line, lines_in, names in references["lines"]:
        targets = [outside.get(name) for name in names]
        if not all(target is not None and target < line for target in targets):
            return None
        referred[line] = lines_in + targets
    return referred


def validate_again_whole(batch: Batch, lease: Lease) -> Batch | None:
    """Drops what checking the chunks recorded (the chunks, the names, the ids) and validates
    the file in one pass."""
    with transaction.atomic():
        held = Batch.objects.select_for_update().filter(
            pk=batch.pk, status=S.VALIDATING, lease_owner=lease.owner
        )
        if not held.exists():
            return None
        Chunk.objects.filter(batch_id=batch.pk).delete()
        names_forget(batch.pk)
        line_ids_forget(batch.pk)
    logger.info("batch %s: checking the mixed file again in one pass, to name its errors", batch.pk)
    return validate_whole(batch, lease)


def repeats_mark(batch: Batch, lease: Lease, checked) -> None:
    """Once every chunk's ids are recorded: checks again each chunk holding a line whose id an
    earlier line has, with those lines known, and records the outcome on it, as if it had been
    checked so at first. Its first line's number, which its check replaced by its first valid
    line's, is counted again from the line breaks before it."""
    operation = operation_get(batch.operation)
    correlation = Correlation.of(batch)
    first_line = 1
    for pk, start, end in list(checked.values_list("pk", "start_offset", "end_offset")):
        lease.tick()
        block = read_range(batch.input_file, start, end)
        last_line = first_line + block.count(b"\n") - block.endswith(b"\n")
        repeats = duplicates_between(batch.pk, first_line, last_line)
        if repeats:
            ids = IdCheck(batch.pk, record=False, repeats=lambda first, last, known=repeats: known)
            outcome = block_check(operation, block, first_line, correlation, ids)
            del outcome["first_line"], outcome["last_line"]
            Chunk.objects.filter(pk=pk).update(**outcome)
        first_line = last_line + 1


def dry_run_merge(batch: Batch, lease: Lease, checked, *, total: int) -> Batch | None:
    """A dry run's results from its checked chunks: every valid line as validate_only."""
    subcodes = SubcodeTally()
    correlation = Correlation.of(batch)
    with tempfile.TemporaryFile() as results:
        for records in checked.values_list("prepared", flat=True).iterator(chunk_size=50):
            lease.tick()
            numbers = []
            for record in records.splitlines():
                number, _, text = record.partition("\t")
                numbers.append(int(number))
                tag = correlation and correlation.tag(fastjson.loads(text))
                results.write(never_ran_line(numbers[-1], VALIDATE_ONLY, tag).encode())
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
            line_ids_forget(batch.pk)
            names_forget(batch.pk)
    if moved is None:
        storage_discard(name)
    return moved

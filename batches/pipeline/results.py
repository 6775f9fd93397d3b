"""The results file: every line's result in line order (docs/contract.md, section 6), merged from the
chunks' results when processing ends, and the partial results when a cancel stops a batch.
The batch's summary (batches.summaries) is counted while the files are written and published
with them."""

import json
import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import transaction

from batches.files import fresh_batch_file_name, storage_discard, storage_save_spooled, storage_spool
from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline.chunk_lease import chunk_leases_take_back
from batches.pipeline.correlation import Correlation, line_ids_forget
from batches.pipeline.faults import StorageReadError
from batches.pipeline.lease import Lease, LeaseLost, StepInterrupted, TickingReader
from batches.pipeline.reading import chunk_records, input_lines, prepared_line_numbers
from batches.states import batch_transition
from batches.summaries import FileDigest, SubcodeTally, summary_final
from batchsite import fastjson
from batchsite.clock import DatabaseNow
from batchsite.faults import RETRIED_ERRORS
from twins.registry import OperationError, OperationResult, RenderedResult

logger = logging.getLogger(__name__)
S = BatchStatus
NOT_EXECUTED = {"subcode": "not_executed", "description": "The batch was cancelled before this line ran."}
VALIDATE_ONLY = {"subcode": "validate_only", "description": "A dry run: the line is valid; it was not run."}
# Lines listed as never run, a block at a time, when a batch stopped before it was cut into chunks.
NEVER_RAN_BLOCK_LINES = 1000


def result_line(
    line: int, outcome: OperationResult | RenderedResult | OperationError, tag: dict | None = None
) -> str:
    """The line's result line; `tag` (batches.pipeline.correlation) goes after its status."""
    if isinstance(outcome, RenderedResult):
        # What fastjson would write for the record below: JSON text is compositional.
        if not tag:
            return f'{{"line":{line},"status":{outcome.status},"result":{outcome.body_json}}}\n'
        head = fastjson.dumps({"line": line, "status": outcome.status, **tag})
        return f'{head[:-1]},"result":{outcome.body_json}}}\n'
    record = {"line": line, "status": outcome.status}
    if tag:
        record.update(tag)
    if isinstance(outcome, OperationResult):
        record["result"] = outcome.body
    else:
        record["error"] = {"subcode": outcome.subcode, "description": outcome.description}
    return fastjson.dumps(record) + "\n"


# What result_line would write for a line that never ran; a cancel may write a million.
NOT_EXECUTED_LINE = (
    '{"line":%d,"status":null,"error":' + json.dumps(NOT_EXECUTED, separators=(",", ":")) + "}\n"
)
# The same line around its number: a block of them is one join of the numbers' text, 40 % less
# time than formatting each line (0.25 -> 0.15 s for the 900,000 lines of a cancel at 10 %).
NOT_EXECUTED_HEAD, NOT_EXECUTED_TAIL = NOT_EXECUTED_LINE.split("%d")


VALIDATE_ONLY_LINE = (
    '{"line":%d,"status":null,"error":' + json.dumps(VALIDATE_ONLY, separators=(",", ":")) + "}\n"
)


def results_expiry():
    return DatabaseNow() + timedelta(days=settings.RESULTS_RETENTION_DAYS)


def never_ran_line(line: int, what: dict, tag: dict | None = None) -> str:
    """The result line of a line that never ran (NOT_EXECUTED or VALIDATE_ONLY)."""
    if not tag:
        return (NOT_EXECUTED_LINE if what is NOT_EXECUTED else VALIDATE_ONLY_LINE) % line
    return fastjson.dumps({"line": line, "status": None, **tag, "error": what}) + "\n"


STATUS_KEY = ',"status":'


def is_success_line(line: str) -> bool:
    # Result lines begin {"line":<n>,"status":<status>, (result_line's fixed key order), so
    # the first "status" key is the top-level one whatever an echoed input holds; a line
    # succeeded when that status is a 2xx (failed ones are 4xx/5xx, never-run ones null).
    status_at = line.find(STATUS_KEY) + len(STATUS_KEY)
    return status_at >= len(STATUS_KEY) and line[status_at : status_at + 1] == "2"


class ResultBlock(NamedTuple):
    """`lines` result lines in line order, of lines that ran (a chunk's results) or that never
    ran, and its failed or never-run lines by subcode (None: not counted when it was made)."""

    text: str
    lines: int
    ran: bool
    subcodes: dict | None


def never_ran_block(numbers: list[int], tags: list[dict] | None = None) -> ResultBlock:
    """The lines `numbers` as not_executed; `tags`, one per line, for a batch with correlation."""
    tally = SubcodeTally()
    tally.add_lines(NOT_EXECUTED["subcode"], numbers)
    if not numbers:
        text = ""
    elif tags is None:
        between = NOT_EXECUTED_TAIL + NOT_EXECUTED_HEAD
        text = NOT_EXECUTED_HEAD + between.join(map(str, numbers)) + NOT_EXECUTED_TAIL
    else:
        text = "".join(
            never_ran_line(number, NOT_EXECUTED, tag) for number, tag in zip(numbers, tags, strict=True)
        )
    return ResultBlock(text, len(numbers), False, tally.counts)


def not_executed_block(batch: Batch, chunk: Chunk, executed: int) -> ResultBlock:
    """The not_executed lines of a chunk past its first `executed` lines."""
    correlation = Correlation.of(batch)
    if correlation is not None:
        numbers, tags = [], []
        for record in chunk_records(batch, chunk).splitlines()[executed:]:
            number, _, text = record.partition("\t")
            numbers.append(int(number))
            tags.append(correlation.tag(fastjson.loads(text)))
        return never_ran_block(numbers, tags)
    if chunk.last_line - chunk.first_line + 1 == chunk.line_count:
        # No blank line inside the chunk: its line numbers follow on without a gap.
        numbers = list(range(chunk.first_line + executed, chunk.last_line + 1))
    else:
        numbers = list(prepared_line_numbers(batch, chunk, executed))
    return never_ran_block(numbers)


def merged_result_blocks(batch: Batch, lease: Lease) -> Iterator[ResultBlock]:
    """Every line's result in line order, as blocks of lines; lines that never ran as
    `not_executed`."""
    chunks = Chunk.objects.filter(batch_id=batch.pk).order_by("index")
    for chunk in chunks.only(
        "pk",
        "index",
        "first_line",
        "last_line",
        "line_count",
        "executed_count",
        "done",
        "start_offset",
        "end_offset",
    ).iterator(chunk_size=500):
        lease.tick()
        executed = chunk.executed_count if chunk.done else 0
        if executed:
            text, subcodes = Chunk.objects.filter(pk=chunk.pk).values_list("results", "subcodes").get()
            yield ResultBlock(text, executed, True, subcodes)
        if executed < chunk.line_count:
            yield not_executed_block(batch, chunk, executed)


def unparsed_not_executed_blocks(batch: Batch, lease: Lease) -> Iterator[ResultBlock]:
    """For a batch stopped before its lines were cut into chunks: every line the file yields,
    as far as it can be read (a file that cannot be parsed lists the lines before the fault)."""
    correlation = Correlation.of(batch)
    numbers: list[int] = []
    tags: list[dict] | None = None if correlation is None else []
    source, lines = input_lines(batch, lease)
    with source:
        try:
            for parsed in lines:
                lease.tick()
                numbers.append(parsed.line)
                if tags is not None:
                    tags.append(correlation.tag(parsed.data))
                if len(numbers) == NEVER_RAN_BLOCK_LINES:
                    yield never_ran_block(numbers, tags)
                    numbers = []
                    tags = None if correlation is None else []
        except (StorageReadError, LeaseLost, StepInterrupted, *RETRIED_ERRORS):
            raise
        except Exception as error:  # noqa: BLE001 - a cancel always ends, whatever the file holds
            logger.warning("batch %s: listing its lines stopped: %r", batch.pk, error)
    if numbers:
        yield never_ran_block(numbers, tags)


class CountingReader(TickingReader):
    """A TickingReader that counts what storage reads through it into `digest`."""

    def __init__(self, source, lease: Lease, digest: FileDigest):
        super().__init__(source, lease)
        self.digest = digest

    def read(self, size=-1):
        data = super().read(size)
        self.digest.update(data)
        return data


def failed_subcodes(failed_lines: list[str]) -> dict:
    """The subcodes of result lines, read from the lines (a chunk committed before its counts
    were kept)."""
    tally = SubcodeTally()
    for line in failed_lines:
        record = json.loads(line)
        tally.add(record["error"]["subcode"], record["line"])
    return tally.counts


class CountedSpools:
    """The results and errors spools of write_results, each counted as it is written, and the
    lines by outcome and by subcode: the batch's summary costs no pass of its own."""

    def __init__(self, results, errors):
        self.results, self.errors = results, errors
        self.results_digest, self.errors_digest = FileDigest(), FileDigest()
        self.subcodes = SubcodeTally()
        self.failed = self.not_executed = 0

    def write(self, block: ResultBlock) -> None:
        encoded = block.text.encode()
        self.results.write(encoded)
        self.results_digest.update(encoded, block.lines)
        if not block.ran:
            self.write_errors(encoded, block.lines)
            self.not_executed += block.lines
            self.subcodes.merge(block.subcodes)
            return
        if ',"error":' not in block.text:
            # Every failed line has this key; a block without it (the usual chunk: all
            # succeeded) is not split into lines.
            return
        failed = [line for line in block.text.splitlines(keepends=True) if not is_success_line(line)]
        self.write_errors("".join(failed).encode(), len(failed))
        self.failed += len(failed)
        self.subcodes.merge(failed_subcodes(failed) if block.subcodes is None else block.subcodes)

    def write_errors(self, encoded: bytes, lines: int) -> None:
        self.errors.write(encoded)
        self.errors_digest.update(encoded, lines)

    def summary(self) -> dict:
        return summary_final(
            succeeded=self.results_digest.lines - self.failed - self.not_executed,
            failed=self.failed,
            not_executed=self.not_executed,
            subcodes=self.subcodes,
            results=self.results_digest,
            errors=self.errors_digest,
        )


def write_results(batch: Batch, blocks: Iterable[ResultBlock], lease: Lease) -> dict:
    """Streams result lines into a new results file and the failed (and unexecuted) ones into a
    new errors file; returns the fields that publish them on the batch, its summary included."""
    names = {
        field: fresh_batch_file_name(
            account_id=batch.account_id, batch_id=batch.pk, stem=stem, suffix=".jsonl"
        )
        for field, stem in (("results_file", "results"), ("errors_file", "errors"))
    }
    with storage_spool() as results, storage_spool() as errors:
        spools = CountedSpools(results, errors)
        for block in blocks:
            spools.write(block)
        try:
            storage_save_spooled(names["results_file"], results, TickingReader(results, lease))
            storage_save_spooled(names["errors_file"], errors, TickingReader(errors, lease))
        except BaseException:
            discard_files(names)
            raise
    return {**names, "results_expire_at": results_expiry(), "summary": spools.summary()}


def discard_files(files: dict) -> None:
    for field in ("results_file", "errors_file"):
        storage_discard(files.get(field, ""))


def publish_results(batch: Batch, lease: Lease, files: dict, *, to: str) -> Batch | None:
    """Ends the step: the files are the batch's once the fenced transition records them, and
    the same transaction drops the chunks' copies of the result lines, so a process that dies
    after it leaves none behind. A step that lost its lease deletes the files it wrote."""
    with transaction.atomic():
        moved = batch_transition(
            batch_id=batch.pk, to=to, allowed_from=[lease.status], owner=lease.owner, **files
        )
        if moved is not None:
            Chunk.objects.filter(batch_id=batch.pk).update(results="", prepared="")
            # A batch cancelled while it was validated leaves the ids its checked lines had.
            line_ids_forget(batch.pk)
    if moved is None:
        discard_files(files)
    return moved


def step_write_results(batch: Batch, lease: Lease) -> Batch | None:
    if batch.processed != batch.total:
        logger.error(
            "batch %s reached writing_results with %s of %s lines processed; not completing it",
            batch.pk,
            batch.processed,
            batch.total,
        )
        return None
    files = write_results(batch, merged_result_blocks(batch, lease), lease)
    return publish_results(batch, lease, files, to=S.COMPLETED)


def step_finish_cancel(batch: Batch, lease: Lease) -> Batch | None:
    """Waits for in-flight chunks to commit or roll back and takes their leases back (a chunk
    that starts after this sees the status and runs nothing), then writes the partial results
    and stops the batch."""
    chunk_leases_take_back(batch.pk, tick=lease.tick)
    # Chunks of a batch stopped while they were being validated hold no results to merge.
    processing_started = batch.total is not None and Chunk.objects.filter(batch_id=batch.pk).exists()
    blocks = (
        merged_result_blocks(batch, lease)
        if processing_started
        else unparsed_not_executed_blocks(batch, lease)
    )
    files = write_results(batch, blocks, lease)
    return publish_results(batch, lease, files, to=S.CANCELLED)

"""The batch pipeline (SPEC sections 4 to 7): copy, validate, process in chunks, write results,
cancel and delete. Every step is safe to run twice: it reads the batch's status from the
database, does its work, and moves the status through `batch_transition`, which refuses a
move the table does not allow. A step that finds nothing to do returns quietly.
"""

import hashlib
import json
import logging
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from celery import current_task
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from batches.fileformat import FileUnreadable, parse_lines
from batches.files import batch_file_name
from batches.models import Batch, BatchStatus, Chunk, Upload
from batches.states import TERMINAL, batch_transition
from batches.storage import read_range
from batchsite.errors import describe_exception
from operating.services import usage_record_batch_lines
from twins.registry import Actor, Operation, OperationError, OperationResult, operation_get

logger = logging.getLogger(__name__)

S = BatchStatus
COPY_BLOCK_BYTES = 1 << 20
HEARTBEAT_EVERY_LINES = 20_000
SQLITE_PAUSE_BETWEEN_CHUNKS_SECONDS = 0.05
NOT_EXECUTED = {"subcode": "not_executed", "description": "The batch was cancelled before this line ran."}


Moved = Batch | None


@dataclass(frozen=True)
class Enqueue:
    """How the pipeline asks for more work; tasks.py gives the Celery-backed one."""

    advance: Callable[[str], None]
    resume: Callable[[str], None]
    run_chunks: Callable[[str], None]


Step = Callable[[Batch, Enqueue], Moved]
# Statuses whose step one worker performs at a time: the worker whose transition entered
# the status, or a resumed one when that worker was lost.
SINGLE_WORKER = frozenset({S.COPYING, S.VALIDATING, S.WRITING_RESULTS, S.CANCELLING})


# Copying -------------------------------------------------------------------------------


class HashingReader:
    """A file-like reader that computes the SHA-256 of everything read through it."""

    # Storage backends ask before rewinding (S3's does); a hash cannot be rewound.
    closed = False

    def __init__(self, source):
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def seekable(self) -> bool:
        return False

    def read(self, size=-1):
        data = self.source.read(COPY_BLOCK_BYTES if size is None or size < 0 else size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def storage_save_exact(name: str, content) -> str:
    """Saves under exactly `name`, replacing what a crashed earlier run may have left."""
    if default_storage.exists(name):
        default_storage.delete(name)
    saved = default_storage.save(name, content)
    if saved != name:
        raise RuntimeError(f"storage saved {name} as {saved}")
    return saved


def step_copy(batch: Batch, enqueue: Enqueue) -> Moved:
    """Streams the upload into the batch's own file, hashing on the way."""
    upload = batch.upload
    target = batch_file_name(account_id=batch.account_id, batch_id=batch.pk, name="input")
    with default_storage.open(upload.file_name, "rb") as source:
        reader = HashingReader(source)
        storage_save_exact(target, File(reader, name="input"))
    computed = reader.sha256.hexdigest()
    if batch.hash and batch.hash != computed:
        default_storage.delete(target)
        moved = batch_transition(
            batch_id=batch.pk,
            to=S.HASH_MISMATCH,
            allowed_from=[S.COPYING],
            note=f"The file's SHA-256 is {computed}.",
            computed_hash=computed,
            failure_reason=f"The given hash does not match the file's SHA-256 ({computed}).",
            results_expire_at=timezone.now() + timedelta(days=settings.RESULTS_RETENTION_DAYS),
        )
        if moved:
            upload_discard(batch)
        return moved
    moved = batch_transition(
        batch_id=batch.pk,
        to=S.COPIED,
        allowed_from=[S.COPYING],
        computed_hash=computed,
        input_file=target,
    )
    if moved:
        upload_discard(batch)
    return moved


def upload_discard(batch: Batch) -> None:
    """The upload is spent once its batch holds its own copy (or discarded it)."""
    upload = batch.upload
    if upload is not None and upload.file_name:
        default_storage.delete(upload.file_name)
        type(upload).objects.filter(pk=upload.pk).update(file_name="")


# Validating ----------------------------------------------------------------------------


def validate_item(operation: Operation, data: dict):
    """The operation's input check, as the REST view runs it: validated data, or the error
    the single call would have answered."""
    try:
        return operation.validate_input(data), None
    except (ValidationError, DjangoValidationError) as error:
        return None, describe_exception(error)


def result_line(line: int, outcome: OperationResult | OperationError) -> str:
    if isinstance(outcome, OperationResult):
        record = {"line": line, "status": outcome.status, "result": outcome.body}
    else:
        record = {
            "line": line,
            "status": outcome.status,
            "error": {"subcode": outcome.subcode, "description": outcome.description},
        }
    return json.dumps(record, separators=(",", ":"), default=str) + "\n"


# What result_line would write for a line that never ran; a cancel may write a million.
NOT_EXECUTED_LINE = (
    '{"line":%d,"status":null,"error":' + json.dumps(NOT_EXECUTED, separators=(",", ":")) + "}\n"
)


def input_lines(batch: Batch):
    name = batch.input_file or (batch.upload.file_name if batch.upload else "")
    content_type = batch.upload.content_type if batch.upload else ""
    source = default_storage.open(name, "rb")
    return source, parse_lines(
        source, content_type=content_type, max_line_bytes=settings.BATCH_LINE_MAX_BYTES
    )


def heartbeat(batch_id) -> None:
    Batch.objects.filter(pk=batch_id).update(heartbeat_at=timezone.now())


def step_validate(batch: Batch, enqueue: Enqueue) -> Moved:
    """Parses and checks every line without side effects. Valid lines go, normalised, into
    `prepared.jsonl` (`<line>\\t<json>` per line) and are cut into chunks; any invalid line
    fails the batch with a report of the bad lines."""
    operation = operation_get(batch.operation)
    prepared_name = batch_file_name(account_id=batch.account_id, batch_id=batch.pk, name="prepared.jsonl")
    report_name = batch_file_name(account_id=batch.account_id, batch_id=batch.pk, name="errors.jsonl")
    chunk_lines = settings.BATCH_CHUNK_LINES
    chunks: list[Chunk] = []
    total = invalid = 0
    offset = 0
    unreadable = ""
    with tempfile.TemporaryFile() as prepared, tempfile.TemporaryFile() as report:
        source, lines = input_lines(batch)
        with source:
            try:
                for parsed in lines:
                    total += 1
                    if total > settings.BATCH_MAX_LINES:
                        unreadable = f"The file has more than {settings.BATCH_MAX_LINES} lines."
                        break
                    if total % HEARTBEAT_EVERY_LINES == 0:
                        heartbeat(batch.pk)
                    if parsed.data is None:
                        error = OperationError(400, parsed.error_subcode, parsed.error)
                    else:
                        _, info = validate_item(operation, parsed.data)
                        error = OperationError.from_info(info) if info else None
                    if error is not None:
                        invalid += 1
                        if invalid <= settings.VALIDATION_REPORT_MAX_LINES:
                            report.write(result_line(parsed.line, error).encode())
                        continue
                    if invalid:
                        continue
                    record = f"{parsed.line}\t{json.dumps(parsed.data, separators=(',', ':'))}\n".encode()
                    if not chunks or chunks[-1].line_count == chunk_lines:
                        chunks.append(
                            Chunk(
                                batch_id=batch.pk,
                                index=len(chunks),
                                first_line=parsed.line,
                                last_line=parsed.line,
                                start_offset=offset,
                                end_offset=offset,
                                line_count=0,
                            )
                        )
                    prepared.write(record)
                    offset += len(record)
                    chunk = chunks[-1]
                    chunk.last_line = parsed.line
                    chunk.end_offset = offset
                    chunk.line_count += 1
            except FileUnreadable as error:
                unreadable = str(error)
        if unreadable or invalid:
            return validation_failed(
                batch, report, report_name, total=total, invalid=invalid, reason=unreadable
            )
        prepared.seek(0)
        storage_save_exact(prepared_name, File(prepared, name="prepared.jsonl"))
    with transaction.atomic():
        moved = batch_transition(batch_id=batch.pk, to=S.PROCESSING, allowed_from=[S.VALIDATING], total=total)
        if moved is not None:
            Chunk.objects.filter(batch_id=batch.pk).delete()
            Chunk.objects.bulk_create(chunks, batch_size=1000)
    return moved


def validation_failed(
    batch: Batch, report, report_name: str, *, total: int, invalid: int, reason: str
) -> Moved:
    if not reason:
        listed = min(invalid, settings.VALIDATION_REPORT_MAX_LINES)
        reason = f"{invalid} of {total} lines are invalid"
        reason += f"; the first {listed} are listed." if listed < invalid else "; each is listed."
    report.seek(0)
    storage_save_exact(report_name, File(report, name="errors.jsonl"))
    return batch_transition(
        batch_id=batch.pk,
        to=S.VALIDATION_FAILED,
        allowed_from=[S.VALIDATING],
        note=reason,
        failure_reason=reason,
        results_file=report_name,
        errors_file=report_name,
        results_expire_at=timezone.now() + timedelta(days=settings.RESULTS_RETENTION_DAYS),
    )


# Processing ----------------------------------------------------------------------------


def prepared_name_of(batch: Batch) -> str:
    return batch_file_name(account_id=batch.account_id, batch_id=batch.pk, name="prepared.jsonl")


def read_chunk_lines(batch: Batch, chunk: Chunk) -> list[tuple[int, str]]:
    """The chunk's (line number, JSON text) pairs, read by offset from the prepared file."""
    block = read_range(prepared_name_of(batch), chunk.start_offset, chunk.end_offset).decode()
    pairs = []
    for record in block.splitlines():
        number, _, text = record.partition("\t")
        pairs.append((int(number), text))
    return pairs


def cancel_requested(batch_id) -> bool:
    status = Batch.objects.filter(pk=batch_id).values_list("status", flat=True).first()
    return status != S.PROCESSING


def execute_items(operation: Operation, actor: Actor, items: list[dict]) -> list:
    """The operation's bulk path; if it fails unexpectedly, each item on its own, so one bad
    line cannot stall the batch (it gets the 500 the single call would have given)."""
    try:
        with transaction.atomic():
            return operation.run_bulk(actor=actor, items=items)
    except Exception:
        logger.exception("bulk %s failed; running its items one by one", operation.name)
    outcomes = []
    for data in items:
        try:
            with transaction.atomic():
                outcomes.extend(operation.run_bulk(actor=actor, items=[data]))
        except Exception:
            logger.exception("%s failed on one item", operation.name)
            outcomes.append(
                OperationError(500, "internal_error", "The server could not complete the request.")
            )
    return outcomes


def is_success_line(line: str) -> bool:
    # Result lines are written by result_line with a fixed key order; inside JSON strings a
    # quote is always escaped, so this key can only be the top-level "result".
    return ',"result":' in line


def may_run(batch: Batch, operation: Operation):
    """The creating user, if their role allows the operation now; else None."""
    account_user = batch.created_by
    user = account_user.user if account_user else None
    if user is None or not user.has_perm(operation.name, batch.account):
        return None
    return user


def run_lines(batch: Batch, operation: Operation, user, pairs: list[tuple[int, str]]) -> list[str]:
    """Executes a few lines as `user`; every line is refused when `user` is None."""
    if user is None:
        refusal = OperationError(403, "action_not_allowed", f"The role does not allow {operation.name}.")
        return [result_line(number, refusal) for number, _ in pairs]
    outcomes: dict[int, OperationResult | OperationError] = {}
    runnable: list[tuple[int, dict]] = []
    for number, text in pairs:
        validated, info = validate_item(operation, json.loads(text))
        if info:
            outcomes[number] = OperationError.from_info(info)
        else:
            runnable.append((number, validated))
    actor = Actor(user=user, account=batch.account)
    executed = execute_items(operation, actor, [validated for _, validated in runnable])
    outcomes.update(zip((number for number, _ in runnable), executed, strict=True))
    return [result_line(number, outcomes[number]) for number, _ in pairs]


def worker_name() -> str:
    """The Celery node running this task, or the host's name outside a worker."""
    task = current_task
    return (task and task.request.hostname) or socket.gethostname()


def chunk_claim_and_run(batch_id) -> bool:
    """Claims one undone chunk of the batch and runs it. Its effects, its result lines, its
    done mark and the batch's progress commit in one transaction, so a worker killed at any
    moment loses nothing and applies nothing twice. False when there is nothing to run."""
    with transaction.atomic():
        chunk = (
            Chunk.objects.select_for_update(skip_locked=True)
            .filter(batch_id=batch_id, done=False)
            .order_by("index")
            .first()
        )
        if chunk is None:
            return False
        batch = Batch.objects.select_related("account", "created_by__user").filter(pk=batch_id).first()
        if batch is None or batch.status != S.PROCESSING:
            return False
        started = time.monotonic()
        operation = operation_get(batch.operation)
        pairs = read_chunk_lines(batch, chunk)
        # Each chunk runs with the creator's permissions as they are when it starts.
        user = may_run(batch, operation)
        step = settings.BATCH_CANCEL_CHECK_LINES
        lines: list[str] = []
        for start in range(0, len(pairs), step):
            if start and cancel_requested(batch_id):
                break
            lines += run_lines(batch, operation, user, pairs[start : start + step])
        succeeded = sum(1 for line in lines if is_success_line(line))
        failed = len(lines) - succeeded
        Chunk.objects.filter(pk=chunk.pk).update(
            done=True,
            executed_count=len(lines),
            succeeded=succeeded,
            failed=failed,
            results="".join(lines),
            done_at=timezone.now(),
            worker=worker_name(),
        )
        usage_record_batch_lines(
            account_id=batch.account_id,
            user_id=batch.created_by_id,
            lines=len(lines),
            failed=failed,
            operation=batch.operation,
            seconds=time.monotonic() - started,
        )
        Batch.objects.filter(pk=batch_id).update(
            processed=F("processed") + len(lines),
            succeeded=F("succeeded") + succeeded,
            failed=F("failed") + failed,
            heartbeat_at=timezone.now(),
        )
    return True


def let_other_writers_in() -> None:
    """SQLite has one writer at a time and its busy handler is not fair: workers committing
    chunk after chunk would starve a request waiting to write (a cancel, a new batch). A
    short pause between chunks lets it in. PostgreSQL locks rows and needs no pause."""
    if connection.vendor == "sqlite":
        time.sleep(SQLITE_PAUSE_BETWEEN_CHUNKS_SECONDS)


def chunks_run(batch_id, enqueue: Enqueue) -> None:
    """A chunk worker: runs up to BATCH_CHUNKS_PER_TASK of the batch's chunks one after
    another. With more left, it queues itself again behind other batches' work, so a large
    batch shares the workers with the rest and no task outlives a broker's acknowledgement
    timeout. With none left (or a cancel noticed) it moves the batch on itself rather than
    queueing that behind other work."""
    for _ in range(settings.BATCH_CHUNKS_PER_TASK):
        if not chunk_claim_and_run(batch_id):
            break
        let_other_writers_in()
    else:
        enqueue.run_chunks(str(batch_id))
        return
    if cancel_requested(batch_id) or not Chunk.objects.filter(batch_id=batch_id, done=False).exists():
        batch_advance(batch_id, enqueue)


def step_processing(batch: Batch, enqueue: Enqueue) -> Moved:
    undone = Chunk.objects.filter(batch_id=batch.pk, done=False).count()
    if undone == 0:
        return batch_transition(batch_id=batch.pk, to=S.PROCESSED, allowed_from=[S.PROCESSING])
    for _ in range(min(undone, settings.BATCH_CHUNK_WORKERS)):
        enqueue.run_chunks(str(batch.pk))
    return None


# Results -------------------------------------------------------------------------------


def prepared_line_numbers(batch: Batch, chunk: Chunk, skip: int) -> Iterator[int]:
    """Line numbers of a chunk's lines after the first `skip`, read from the prepared file."""
    block = read_range(prepared_name_of(batch), chunk.start_offset, chunk.end_offset)
    for record in block.splitlines()[skip:]:
        yield int(record.split(b"\t", 1)[0])


def not_executed_block(batch: Batch, chunk: Chunk, executed: int) -> str:
    """The not_executed lines of a chunk past its first `executed` lines."""
    if chunk.last_line - chunk.first_line + 1 == chunk.line_count:
        # No blank line inside the chunk: its line numbers follow on without a gap.
        numbers = range(chunk.first_line + executed, chunk.last_line + 1)
    else:
        numbers = prepared_line_numbers(batch, chunk, executed)
    return "".join(NOT_EXECUTED_LINE % number for number in numbers)


ResultBlock = tuple[str, bool]


def merged_result_blocks(batch: Batch) -> Iterator[ResultBlock]:
    """Every line's result in line order, as blocks of lines, each marked whether all of its
    lines failed; lines that never ran as `not_executed`."""
    chunks = Chunk.objects.filter(batch_id=batch.pk).order_by("index")
    for chunk in chunks.only(
        "pk",
        "index",
        "first_line",
        "last_line",
        "line_count",
        "executed_count",
        "start_offset",
        "end_offset",
        "done",
    ):
        executed = chunk.executed_count if chunk.done else 0
        if executed:
            yield Chunk.objects.filter(pk=chunk.pk).values_list("results", flat=True).get(), False
        if executed < chunk.line_count:
            yield not_executed_block(batch, chunk, executed), True


def unparsed_not_executed_blocks(batch: Batch) -> Iterator[ResultBlock]:
    """For a batch stopped before its lines were cut into chunks: every non-blank line."""
    source, lines = input_lines(batch)
    with source:
        try:
            for parsed in lines:
                yield NOT_EXECUTED_LINE % parsed.line, True
        except FileUnreadable:
            return


def write_results(batch: Batch, blocks: Iterable[ResultBlock]) -> dict:
    """Streams result lines into results.jsonl and the failed (and unexecuted) ones into
    errors.jsonl; returns the fields to set on the batch."""
    results_name = batch_file_name(account_id=batch.account_id, batch_id=batch.pk, name="results.jsonl")
    errors_name = batch_file_name(account_id=batch.account_id, batch_id=batch.pk, name="errors.jsonl")
    with tempfile.TemporaryFile() as results, tempfile.TemporaryFile() as errors:
        for block, all_failed in blocks:
            encoded = block.encode()
            results.write(encoded)
            if all_failed:
                errors.write(encoded)
            else:
                failed = [line for line in block.splitlines(keepends=True) if not is_success_line(line)]
                errors.write("".join(failed).encode())
        results.seek(0)
        errors.seek(0)
        storage_save_exact(results_name, File(results, name="results.jsonl"))
        storage_save_exact(errors_name, File(errors, name="errors.jsonl"))
    return {
        "results_file": results_name,
        "errors_file": errors_name,
        "results_expire_at": timezone.now() + timedelta(days=settings.RESULTS_RETENTION_DAYS),
    }


def step_write_results(batch: Batch, enqueue: Enqueue) -> Moved:
    files = write_results(batch, merged_result_blocks(batch))
    moved = batch_transition(batch_id=batch.pk, to=S.COMPLETED, allowed_from=[S.WRITING_RESULTS], **files)
    if moved:
        Chunk.objects.filter(batch_id=batch.pk).update(results="")
    return moved


# Cancelling and deleting ---------------------------------------------------------------


def step_finish_cancel(batch: Batch, enqueue: Enqueue) -> Moved:
    """Waits for in-flight chunks (their row locks) to commit or roll back, then writes the
    partial results and stops the batch."""
    with transaction.atomic():
        list(Chunk.objects.select_for_update().filter(batch_id=batch.pk, done=False).values_list("pk"))
        has_chunks = Chunk.objects.filter(batch_id=batch.pk).exists()
        blocks = merged_result_blocks(batch) if has_chunks else unparsed_not_executed_blocks(batch)
        files = write_results(batch, blocks)
        moved = batch_transition(batch_id=batch.pk, to=S.CANCELLED, allowed_from=[S.CANCELLING], **files)
    if moved:
        Chunk.objects.filter(batch_id=batch.pk).update(results="")
    return moved


def batch_files(batch: Batch) -> set[str]:
    names = {
        batch_file_name(account_id=batch.account_id, batch_id=batch.pk, name=name)
        for name in ("input", "prepared.jsonl", "results.jsonl", "errors.jsonl")
    }
    names |= {name for name in (batch.input_file, batch.results_file, batch.errors_file) if name}
    if batch.upload is not None and batch.upload.file_name:
        names.add(batch.upload.file_name)
    return names


def step_purge(batch: Batch, enqueue: Enqueue) -> Moved:
    """Removes the batch's files, then the batch itself (history and chunks go with it)."""
    for name in batch_files(batch):
        if default_storage.exists(name):
            default_storage.delete(name)
    if batch.upload is not None:
        type(batch.upload).objects.filter(pk=batch.upload.pk).delete()
    Batch.objects.filter(pk=batch.pk, status=S.DELETING).delete()
    return None


def to(status: str, *, allowed_from: str) -> Step:
    def step(batch: Batch, enqueue: Enqueue) -> Moved:
        return batch_transition(batch_id=batch.pk, to=status, allowed_from=[allowed_from])

    return step


STEPS: dict[str, Step] = {
    S.NEW: to(S.COPYING, allowed_from=S.NEW),
    S.COPYING: step_copy,
    S.COPIED: to(S.VALIDATING, allowed_from=S.COPIED),
    S.VALIDATING: step_validate,
    S.PROCESSING: step_processing,
    S.PROCESSED: to(S.WRITING_RESULTS, allowed_from=S.PROCESSED),
    S.WRITING_RESULTS: step_write_results,
    S.CANCEL: to(S.CANCELLING, allowed_from=S.CANCEL),
    S.CANCELLING: step_finish_cancel,
    S.DELETING: step_purge,
}


def next_step(batch: Batch) -> Step | None:
    if batch.delete_requested_at and batch.status in TERMINAL:
        return to(S.DELETING, allowed_from=batch.status)
    return STEPS.get(batch.status)


def batch_advance(batch_id, enqueue: Enqueue, *, resume: bool = False) -> None:
    """Runs the batch's next steps until it waits for chunk workers or stops. A step of a
    single-worker status runs only here if this call entered that status, or when resuming
    the work of a lost worker."""
    entered = None
    while True:
        batch = Batch.objects.select_related("upload", "account").filter(pk=batch_id).first()
        if batch is None:
            return
        step = next_step(batch)
        if step is None:
            return
        if batch.status in SINGLE_WORKER and batch.status != entered and not resume:
            return
        resume = False
        heartbeat(batch.pk)
        moved = step(batch, enqueue)
        if moved is None:
            return
        entered = moved.status


def batches_resume_stuck(enqueue: Enqueue) -> int:
    """Batches in a non-terminal status whose heartbeat stopped (their worker was lost, or the
    broker dropped the message) get their next step enqueued again."""
    quiet_since = timezone.now() - timedelta(seconds=settings.BATCH_STUCK_AFTER_SECONDS)
    stuck = Batch.objects.exclude(status__in=TERMINAL).filter(heartbeat_at__lt=quiet_since)
    stuck_new = Batch.objects.filter(status=S.NEW, heartbeat_at__isnull=True, created_at__lt=quiet_since)
    deletions = Batch.objects.filter(status__in=TERMINAL, delete_requested_at__lt=quiet_since)
    batch_ids = {
        str(pk) for query in (stuck, stuck_new, deletions) for pk in query.values_list("pk", flat=True)
    }
    for batch_id in batch_ids:
        heartbeat(batch_id)
        enqueue.resume(batch_id)
    return len(batch_ids)


def uploads_expire(*, keep_rows_days: int = 7) -> int:
    """Unused uploads past their validity (or invalidated) lose their bytes; their rows stay
    a while so a late create_batch is told "expired" rather than "unknown"."""
    now = timezone.now()
    unused = Upload.objects.filter(used_at__isnull=True)
    lapsed = unused.filter(Q(expires_at__lt=now) | Q(invalidated_at__isnull=False)).exclude(file_name="")
    count = 0
    for upload in lapsed.only("pk", "file_name"):
        default_storage.delete(upload.file_name)
        Upload.objects.filter(pk=upload.pk).update(file_name="")
        count += 1
    unused.filter(expires_at__lt=now - timedelta(days=keep_rows_days)).delete()
    return count


def batches_past_retention(enqueue: Enqueue) -> int:
    """Finished batches whose results passed their retention are deleted like a DELETE would."""
    expired = Batch.objects.filter(
        status__in=TERMINAL, results_expire_at__lt=timezone.now(), delete_requested_at__isnull=True
    )
    batch_ids = [str(pk) for pk in expired.values_list("pk", flat=True)]
    Batch.objects.filter(pk__in=batch_ids).update(delete_requested_at=timezone.now())
    for batch_id in batch_ids:
        enqueue.advance(batch_id)
    return len(batch_ids)

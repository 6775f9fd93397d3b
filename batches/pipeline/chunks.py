"""Processing: chunks (line ranges) claimed and run by any number of workers.

A chunk's effects, its result lines, its done mark and the batch's progress commit in one
transaction, so a worker killed at any moment loses nothing and applies nothing twice. A chunk
is held by a lease (batches.pipeline.chunk_lease), not a row lock, so a frozen or cut-off
worker's chunk is taken over once its lease expires, and the stale worker commits nothing. Locks
are taken in one order everywhere: chunk rows (only those: `of=("self",)`, no join), then the
batch row, which a chunk holds for its last few statements only.

Scheduling is fair across accounts: the next chunk a worker claims belongs to the account
that has had the fewest lines run among its processing batches, then to that account's batch
of the highest priority, then with the fewest lines run (least attained service). A small batch
arriving beside a large one is served by the next chunk any worker claims. Priorities order one
account's batches only: the account is chosen as if they had none.

A paused batch's running chunks finish (their lines commit); no chunk is claimed while it is
paused. A batch past its deadline claims no chunk, and its running chunks stop at their next
line group as at a cancel: no more than one chunk's lines run after the deadline.
"""

import logging
import math
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

from celery import current_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Exists, ExpressionWrapper, F, OuterRef, Sum, Window

from batches.controls import budget_exceeded, is_budget_stop
from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline.chunk_lease import ChunkLease, ChunkLeaseLost
from batches.pipeline.correlation import Correlation
from batches.pipeline.mixed import MIXED, MixedCheck, MixedRun, creator_actions
from batches.pipeline.reading import read_chunk_lines
from batches.pipeline.results import result_line
from batches.pipeline.scheduling import deadline_reason, deadline_stop, is_overdue
from batches.pipeline.sessions import role_set_local
from batches.pipeline.validating import chunk_check, chunk_ids_check
from batches.signals import chunk_lines_ran
from batches.states import batch_transition
from batches.summaries import SubcodeTally
from batchsite import fastjson
from batchsite.clock import DatabaseNow
from batchsite.faults import TRANSIENT_DATABASE_ERRORS
from batchsite.logs import batch_logged
from twins.registry import Actor, Operation, OperationError, OperationResult, RenderedResult, operation_get

logger = logging.getLogger(__name__)
S = BatchStatus
SQLITE_PAUSE_BETWEEN_CHUNKS_SECONDS = 0.05
# Checking a chunk costs a few milliseconds; claiming one, its queries cost nearly as much,
# so a claim takes a few (a million lines are still 250 claims to share among workers).
CHECKED_CHUNKS_PER_CLAIM = 4
# Statuses in which chunk workers have work: checking chunks, running them.
CHUNKED = (S.VALIDATING, S.PROCESSING)
# Batches in turn read at once: past the first page only when every chunk of its batches is
# held by another worker.
BATCHES_IN_TURN_PAGE = 20
INTERNAL_ERROR = OperationError(500, "internal_error", "The server could not complete the request.")


def execute_items(operation: Operation, actor: Actor, items: list[dict]) -> list:
    """The operation's bulk path. If it fails for a reason of its own, each item runs alone,
    so one bad line gets the 500 the single call would have given and the others run. A
    database fault (dropped connection, statement cancel, deadlock) is not a line's fault: it
    is raised, the chunk rolls back and runs again later."""
    try:
        with transaction.atomic():
            return operation.run_bulk(actor=actor, items=items)
    except TRANSIENT_DATABASE_ERRORS:
        raise
    except Exception:
        logger.exception("bulk %s failed; running its %d items one by one", operation.name, len(items))
    outcomes = []
    failures = 0
    for data in items:
        try:
            with transaction.atomic():
                outcomes.extend(operation.run_bulk(actor=actor, items=[data]))
        except TRANSIENT_DATABASE_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - the line fails, the chunk goes on
            failures += 1
            logger.warning("%s failed on one item: %r", operation.name, error)
            outcomes.append(INTERNAL_ERROR)
    return outcomes


def may_run(batch: Batch, operation: Operation):
    """The creating user, if their role allows the operation now; else None."""
    account_user = batch.created_by
    user = account_user.user if account_user else None
    if user is None or not user.has_perm(operation.name, batch.account):
        return None
    return user


Outcome = OperationResult | RenderedResult | OperationError


def run_lines(
    batch: Batch, operation: Operation, user, pairs: list[tuple[int, str]]
) -> list[tuple[int, Outcome]]:
    """Executes a few lines as `user`; every line is refused when `user` is None. Returns each
    line's number and outcome, in line order."""
    correlation = Correlation.of(batch)
    if user is not None and correlation is None and runs_as_set(operation):
        return run_set(batch, operation, user, pairs)
    requests = []
    for number, text in pairs:
        data = fastjson.loads(text)
        requests.append((number, data if correlation is None else correlation.request(data)))
    return run_requests(batch, operation, user, requests)


def runs_as_set(operation: Operation) -> bool:
    return (
        operation.set_executor is not None
        and connection.vendor == "postgresql"
        and settings.BATCH_SET_EXECUTION
    )


def run_set(
    batch: Batch, operation: Operation, user, pairs: list[tuple[int, str]]
) -> list[tuple[int, Outcome]]:
    """`run_lines` through the operation's set executor, on lines as validation wrote them
    (validated: nothing is checked again). The lines it cannot decide run through
    `run_requests`, as all of them do if it fails for a reason of its own; a database fault
    is raised, as in `execute_items`."""
    items = [fastjson.loads(text) for _, text in pairs]
    try:
        with transaction.atomic():
            outcomes = operation.set_executor(actor=Actor(user=user, account=batch.account), items=items)
    except TRANSIENT_DATABASE_ERRORS:
        raise
    except Exception:
        logger.exception(
            "set path of %s failed; running its %d lines on the bulk path", operation.name, len(pairs)
        )
        outcomes = [None] * len(pairs)
    undecided = [
        (number, item)
        for (number, _), item, outcome in zip(pairs, items, outcomes, strict=True)
        if outcome is None
    ]
    decided = dict(run_requests(batch, operation, user, undecided)) if undecided else {}
    return [
        (number, decided[number] if outcome is None else outcome)
        for (number, _), outcome in zip(pairs, outcomes, strict=True)
    ]


def run_requests(
    batch: Batch, operation: Operation, user, requests: list[tuple[int, dict]]
) -> list[tuple[int, Outcome]]:
    """`run_lines` of lines already read: (line number, the operation's input) pairs."""
    if user is None:
        refusal = OperationError(403, "action_not_allowed", f"The role does not allow {operation.name}.")
        return [(number, refusal) for number, _ in requests]
    outcomes: dict[int, Outcome] = {}
    runnable: list[tuple[int, dict]] = []
    for number, data in requests:
        validated, error = operation.checked(data)
        if error is not None:
            outcomes[number] = error
        else:
            runnable.append((number, validated))
    actor = Actor(user=user, account=batch.account)
    executed = execute_items(operation, actor, [validated for _, validated in runnable])
    outcomes.update(zip((number for number, _ in runnable), executed, strict=True))
    return [(number, outcomes[number]) for number, _ in requests]


def mixed_run(batch: Batch, chunk: Chunk) -> MixedRun:
    """Runs a mixed chunk's lines, each operation as its creator's role allows it when the
    chunk starts: the role's actions read once (a permission check costs about 10 ms)."""
    user, held = creator_actions(batch)

    def run_operation(operation: Operation, requests: list[tuple[int, dict]]):
        return run_requests(batch, operation, user if operation.name in held else None, requests)

    return MixedRun(batch, chunk.first_line, chunk.last_line, Correlation.of(batch), run_lines=run_operation)


# Statuses in which a running chunk goes on to its end: a pause lets it finish.
RUNNING_ON = (S.PROCESSING, S.PAUSED)


class GroupStop(NamedTuple):
    # The batch stopped (a cancel, a delete, the error budget); a pause is no stop.
    stopped: bool
    # The deadline's reason once the batch's deadline passed (by the database's clock), or "".
    deadline: str


def group_stop(batch_id) -> GroupStop:
    """What a running chunk asks between line groups, in one query of the batch's row."""
    row = (
        Batch.objects.filter(pk=batch_id)
        .annotate(overdue=ExpressionWrapper(is_overdue(), output_field=BooleanField()))
        .values_list("status", "deadline_at", "overdue")
        .first()
    )
    if row is None:
        return GroupStop(True, "")
    status, deadline_at, overdue = row
    return GroupStop(status not in RUNNING_ON, deadline_reason(deadline_at) if overdue else "")


def worker_name() -> str:
    """The Celery node running this task, or the host's name outside a worker."""
    task = current_task
    return (task and task.request.hostname) or socket.gethostname()


def budget_reason(batch_id, budget: dict | None, *, lines: int, failed: int) -> str:
    """Between line groups of a chunk: why the batch's committed counts plus this chunk's so
    far pass its error budget, or "" while they do not."""
    if not budget:
        return ""
    processed, failed_before = Batch.objects.filter(pk=batch_id).values_list("processed", "failed").get()
    return budget_exceeded(budget, processed=processed + lines, failed=failed_before + failed)


@dataclass
class ChunkRun:
    lines: list[str] = field(default_factory=list)
    failed: int = 0
    subcodes: SubcodeTally = field(default_factory=SubcodeTally)
    # Set when the chunk stopped early because the budget or the deadline was passed as it ran.
    stop_reason: str = ""


Pairs = list[tuple[int, str]]


def run_chunk_lines(
    batch: Batch, run_group: Callable[[Pairs], list], pairs: Pairs, lease: ChunkLease
) -> ChunkRun:
    """Runs the chunk's lines a group at a time (`run_group`: each line's number and outcome,
    in line order); between groups, renews the chunk's lease and stops at a cancel, once the
    deadline passed or once the error budget is passed."""
    run = ChunkRun()
    # Groups of even size, about BATCH_CANCEL_CHECK_LINES (at most half as many again): a
    # chunk of 1,002 lines (a mixed one grows past its size to keep references inside) runs
    # as 501 and 501, not 500, 500 and a group of 2, nor 3 of 334: each group pays its
    # statements (a mixed group's twin lookups and checks, per operation) whatever its size.
    groups = max(1, round(len(pairs) / settings.BATCH_CANCEL_CHECK_LINES))
    step = max(1, math.ceil(len(pairs) / groups))
    correlation = Correlation.of(batch)
    tags = {}
    if correlation is not None:
        tags = {number: correlation.tag(fastjson.loads(text)) for number, text in pairs}
    for start in range(0, len(pairs), step):
        if start:
            lease.tick()
            stop = group_stop(batch.pk)
            if stop.stopped:
                break
            run.stop_reason = stop.deadline
            if run.stop_reason:
                break
            run.stop_reason = budget_reason(
                batch.pk, batch.error_budget, lines=len(run.lines), failed=run.failed
            )
            if run.stop_reason:
                break
        for number, outcome in run_group(pairs[start : start + step]):
            run.lines.append(result_line(number, outcome, tags.get(number)))
            if isinstance(outcome, OperationError):
                run.failed += 1
                run.subcodes.add(outcome.subcode, number)
    return run


def chunk_claim_and_run(batch_id) -> bool:
    """Claims one undone chunk of the batch (batches.pipeline.chunk_lease) and runs it. False
    when there is nothing to run (no chunk left, every one held, or the batch stopped)."""
    lease = ChunkLease.claim(
        batch_id=batch_id, status=S.PROCESSING, unfinished={"done": False}, count=1, worker=worker_name()
    )
    if lease is None:
        return False
    try:
        return chunk_run(batch_id, lease)
    except ChunkLeaseLost as lost:
        logger.warning("batch %s: %s; nothing of it committed", batch_id, lost)
        return True
    finally:
        lease.release()


def chunk_run(batch_id, lease: ChunkLease) -> bool:
    """Runs a leased chunk in one transaction: its effects, its results, its done mark (fenced
    by the lease) and the batch's progress commit together.

    The error budget (docs/contract.md, section 11) is judged at the end, under the batch's row lock, which
    is held for the last few statements only: the chunk whose results pass it commits them with
    the move processing -> cancel, so no chunk starts after it, and a chunk that was running
    meanwhile and finds the batch stopped by the budget rolls back (its lines are listed as not
    executed). So at most one chunk's lines run past the budget, on any number of workers."""
    with transaction.atomic():
        role_set_local("chunk")
        batch = Batch.objects.select_related("account", "created_by__user").filter(pk=batch_id).first()
        # Paused or stopped since the claim: nothing of the chunk runs.
        if batch is None or batch.status != S.PROCESSING:
            return False
        chunk = Chunk.objects.get(pk=lease.chunk_ids[0])
        started = time.monotonic()
        pairs = read_chunk_lines(batch, chunk)
        # Each chunk runs with the creator's permissions as they are when it starts.
        if batch.operation == MIXED:
            run_group = mixed_run(batch, chunk)
        else:
            operation = operation_get(batch.operation)
            user = may_run(batch, operation)
            run_group = partial(run_lines, batch, operation, user)
        run = run_chunk_lines(batch, run_group, pairs, lease)
        executed, failed = len(run.lines), run.failed
        lease.fence(
            chunk.pk,
            done=True,
            executed_count=executed,
            succeeded=executed - failed,
            failed=failed,
            results="".join(run.lines),
            subcodes=run.subcodes.counts,
            done_at=DatabaseNow(),
            worker=worker_name(),
        )
        if batch.operation == MIXED:
            run_group.outcomes_record()
            waiting_release(batch.pk, chunk.unblocks)
        chunk_lines_ran.send(
            sender=Chunk, batch=batch, lines=executed, failed=failed, seconds=time.monotonic() - started
        )
        batch_progress_record(batch, run, chunk_index=chunk.index)
    return True


def waiting_release(batch_id, indexes: list[int] | None) -> None:
    """Inside a chunk's transaction: the chunks waiting on it wait for one chunk fewer."""
    if indexes:
        Chunk.objects.filter(batch_id=batch_id, index__in=indexes).update(waits=F("waits") - 1)


def batch_progress_record(batch: Batch, run: ChunkRun, *, chunk_index: int) -> None:
    """The chunk's last statements: under the batch's row lock, its counts go into the batch's,
    or, if the batch stopped past its error budget meanwhile, the chunk rolls back."""
    current = (
        Batch.objects.select_for_update(of=("self",))
        .only("status", "failure_reason", "processed", "failed")
        .get(pk=batch.pk)
    )
    if current.status != S.PROCESSING and is_budget_stop(current.failure_reason):
        logger.info(
            "batch %s: chunk %s rolled back, the batch stopped past its error budget", batch.pk, chunk_index
        )
        transaction.set_rollback(True)
        return
    executed, failed = len(run.lines), run.failed
    Batch.objects.filter(pk=batch.pk).update(
        processed=F("processed") + executed,
        succeeded=F("succeeded") + executed - failed,
        failed=F("failed") + failed,
        heartbeat_at=DatabaseNow(),
        stalled_since=None,
    )
    if current.status in RUNNING_ON:
        # Counts committed by other chunks meanwhile may bring a ratio back under the
        # budget; a chunk that stopped early for it (or for the deadline) stops the batch all
        # the same, with the counts it saw, or its unrun lines would never run.
        reason = budget_exceeded(
            batch.error_budget, processed=current.processed + executed, failed=current.failed + failed
        )
        stop_past_budget(batch.pk, reason or run.stop_reason)


def chunk_claim_and_validate(batch_id) -> bool:
    """Claims up to CHECKED_CHUNKS_PER_CLAIM unchecked chunks of a batch validated in parallel
    and checks their lines, recording the outcome on the chunks only (fenced by the lease, in
    one transaction). False when there is nothing to check."""
    lease = ChunkLease.claim(
        batch_id=batch_id,
        status=S.VALIDATING,
        unfinished={"validated": False},
        count=CHECKED_CHUNKS_PER_CLAIM,
        worker=worker_name(),
    )
    if lease is None:
        return False
    try:
        with transaction.atomic():
            role_set_local("chunk")
            batch = Batch.objects.filter(pk=batch_id).select_related("account", "created_by__user").first()
            if batch is None or batch.status != S.VALIDATING:
                return False
            operation = operation_get(batch.operation)
            correlation, ids = Correlation.of(batch), chunk_ids_check(batch_id)
            claimed = Chunk.objects.filter(pk__in=lease.chunk_ids).order_by("index")
            actions = creator_actions(batch)[1] if batch.operation == MIXED else set()
            for chunk in claimed.only("pk", "first_line", "start_offset", "end_offset"):
                # Each chunk's own: the names it defines are its own lines' (for duplicates).
                mixed = MixedCheck(batch, actions, chunk_only=True) if batch.operation == MIXED else None
                checked = chunk_check(operation, batch.input_file, chunk, correlation, ids, mixed)
                lease.tick()
                lease.fence(chunk.pk, validated=True, worker=worker_name(), **checked)
            Batch.objects.filter(pk=batch_id).update(heartbeat_at=DatabaseNow())
    except ChunkLeaseLost as lost:
        logger.warning("batch %s: %s; nothing of it committed", batch_id, lost)
    finally:
        lease.release()
    return True


def stop_past_budget(batch_id, reason: str) -> None:
    """Stops the batch as a cancel does, when there is a reason. Runs inside the chunk's
    transaction, holding the batch's row lock."""
    if reason:
        batch_transition(
            batch_id=batch_id, to=S.CANCEL, allowed_from=RUNNING_ON, note=reason, failure_reason=reason
        )


def batches_in_turn() -> Iterator[tuple]:
    """(batch, status) of the batches with chunks to run or check, in the order their next
    chunk is due: least attained service per account, then the account's batches by priority
    (highest first) and least attained service. Ordered by the database and read a page at a
    time: a claim nearly always takes the first batch, whatever the number running."""
    in_turn = (
        Batch.objects.filter(status__in=CHUNKED)
        .annotate(attained=Window(Sum("processed"), partition_by=[F("account_id")]))
        .order_by("attained", "account_id", "-priority", "processed", "pk")
        .values_list("pk", "status")
    )
    start = 0
    while True:
        page = list(in_turn[start : start + BATCHES_IN_TURN_PAGE])
        yield from page
        if len(page) < BATCHES_IN_TURN_PAGE:
            return
        start += BATCHES_IN_TURN_PAGE


def chunk_run_next():
    """Runs (or checks) the next chunk due; returns its batch's id, or None when no chunk can
    be claimed. A batch found past its deadline is stopped instead, and its id returned."""
    for batch_id in Batch.objects.filter(is_overdue(), status__in=CHUNKED).values_list("pk", flat=True):
        if deadline_stop(batch_id) is not None:
            return batch_id
    for batch_id, status in batches_in_turn():
        claim = chunk_claim_and_validate if status == S.VALIDATING else chunk_claim_and_run
        with batch_logged(batch_id):
            if claim(batch_id):
                return batch_id
    return None


def chunk_work_settled(batch_id) -> bool:
    """Nothing more will run or be checked: every chunk is done (checked, while validating),
    or the batch stopped. One query: a chunk worker asks after every chunk."""
    chunks = Chunk.objects.filter(batch_id=OuterRef("pk"))
    row = (
        Batch.objects.filter(pk=batch_id)
        .order_by()
        .annotate(unchecked=Exists(chunks.filter(validated=False)), unrun=Exists(chunks.filter(done=False)))
        .values_list("status", "unchecked", "unrun")
        .first()
    )
    if row is None:
        return True
    status, unchecked, unrun = row
    if status == S.VALIDATING:
        return not unchecked
    return status != S.PROCESSING or not unrun


def let_other_writers_in() -> None:
    """SQLite has one writer at a time and its busy handler is not fair: workers committing
    chunk after chunk would starve a request waiting to write (a cancel, a new batch). A
    short pause between chunks lets it in. PostgreSQL locks rows and needs no pause."""
    if connection.vendor == "sqlite":
        time.sleep(SQLITE_PAUSE_BETWEEN_CHUNKS_SECONDS)


def processing_finish(batch: Batch) -> Batch | None:
    """Moves a batch whose chunks are all done to processed, only if every line ran once."""
    executed = Chunk.objects.filter(batch_id=batch.pk).aggregate(total=Sum("executed_count"))["total"] or 0
    if not (batch.processed == batch.total == executed):
        logger.error(
            "batch %s: all chunks done but processed=%s executed=%s total=%s; left in processing",
            batch.pk,
            batch.processed,
            executed,
            batch.total,
        )
        return None
    return batch_transition(batch_id=batch.pk, to=S.PROCESSED, allowed_from=[S.PROCESSING])


def undone_chunks(batch_id) -> int:
    return Chunk.objects.filter(batch_id=batch_id, done=False).count()


def unvalidated_chunks(batch_id) -> int:
    return Chunk.objects.filter(batch_id=batch_id, validated=False).count()

"""Reads for uploads and batches. A client's are scoped to its account: another account's
handler or batch is 404, exactly like one that does not exist. The few that read across
accounts (for staff and operators) say so."""

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from batches.durations import duration_words
from batches.models import Batch, BatchStatus, Chunk, Upload
from batches.partial import PARTIAL_STATUSES
from batches.pipeline.scheduling import start_blocked, waiting_on_parent
from batches.statuses import ACTIVE, TERMINAL
from batches.summaries import SubcodeTally, summary_partial, summary_shown
from batchsite.clock import DatabaseNow, database_now_plus
from batchsite.paging import cursor_encode, rows_after
from permissions.models import Account

S = BatchStatus
# ge/le compare with the created_ts a client sees, which is rounded to the millisecond.
HALF_MILLISECOND = timedelta(microseconds=500)


def _uuid_or_none(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def upload_get(*, account: Account, handler) -> Upload:
    upload = Upload.objects.filter(account=account, handler=_uuid_or_none(handler)).first()
    if upload is None:
        raise Http404("No such upload handler.")
    return upload


def batch_get(*, account: Account, batch_id) -> Batch:
    batch = Batch.objects.filter(account=account, uuid=_uuid_or_none(batch_id)).first()
    if batch is None:
        raise Http404("No such batch.")
    return batch


@dataclass(frozen=True)
class BatchPage:
    batches: list[Batch]
    cursor: str | None


def batch_list(
    *,
    account: Account | None,
    every_account: bool = False,
    status: str | None = None,
    operation: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    cursor: str | None = None,
    limit: int,
    whole_rows: bool = False,
) -> BatchPage:
    """The account's batches newest first, a page at a time, for the API and the pages. The
    cursor is the position of the last batch on the page, so pages stay stable while new
    batches arrive; one this service did not issue is InvalidCursor. Every account's batches
    only when asked for with `every_account` (staff who may view them all: the caller checks).
    The rows hold what the API lists, or with `whole_rows` every column and the account."""
    batches = Batch.objects.order_by("-created_at", "-uuid")
    if account is not None:
        batches = batches.filter(account=account)
    elif not every_account:
        raise ValueError("batch_list lists one account's batches unless every_account is set")
    if status:
        batches = batches.filter(status=status)
    if operation:
        batches = batches.filter(operation=operation)
    if created_from is not None:
        batches = batches.filter(created_at__gte=created_from - HALF_MILLISECOND)
    if created_to is not None:
        batches = batches.filter(created_at__lt=created_to + HALF_MILLISECOND)
    if cursor:
        batches = batches.filter(rows_after(cursor))
    if whole_rows:
        batches = batches.select_related("account")
    else:
        batches = batches.only("uuid", "status", "created_at")
    rows = list(batches[: limit + 1])
    page = rows[:limit]
    return BatchPage(batches=page, cursor=cursor_encode(page[-1]) if len(rows) > limit else None)


# A batch's summary ------------------------------------------------------------------------


def batch_summary(batch: Batch) -> dict | None:
    """The batch's summary (docs/contract.md, accounting): a terminal batch's as stored with its
    files (None for one that ended before summaries were kept); while lines run (or wait for
    the final file), the lines done so far, added up from the done chunks in one query, so its
    counts and subcodes agree; None before any line can run and while it is deleted."""
    if batch.status in TERMINAL:
        return summary_shown(batch.summary) if batch.summary else None
    if batch.status not in PARTIAL_STATUSES or batch.total is None:
        return None
    succeeded = failed = 0
    subcodes = SubcodeTally()
    done = Chunk.objects.filter(batch_id=batch.pk, done=True).order_by("index")
    for chunk_succeeded, chunk_failed, counts in done.values_list("succeeded", "failed", "subcodes"):
        succeeded += chunk_succeeded
        failed += chunk_failed
        subcodes.merge(counts or {})
    return summary_shown(
        summary_partial(total=batch.total, succeeded=succeeded, failed=failed, subcodes=subcodes)
    )


# Batches that are not moving -----------------------------------------------------------


def silent_for(seconds: float) -> Q:
    """Batches no work has touched for `seconds`, by the database's clock: no heartbeat since,
    or, never started, created before. Work writes the heartbeat: a status change, a step's
    lease renewal, a committed or checked chunk."""
    since = database_now_plus(-seconds)
    return Q(heartbeat_at__lt=since) | Q(heartbeat_at__isnull=True, created_at__lt=since)


def batches_stalled(*, after_seconds: float | None = None) -> QuerySet[Batch]:
    """Active batches silent for `after_seconds` (BATCH_STALL_AFTER_SECONDS unless given): the
    one definition of a stall, which /healthz and the metrics count, the admin lists, and the
    sweep resumes (processing ones, after BATCH_STUCK_AFTER_SECONDS). A batch that waits by
    design (scheduled, waiting on a parent, paused) is not stalled."""
    seconds = settings.BATCH_STALL_AFTER_SECONDS if after_seconds is None else after_seconds
    return moving_batches().filter(silent_for(seconds))


def moving_batches() -> QuerySet[Batch]:
    """Active batches a worker owes a step: not paused, not new and waiting for their time or
    a parent (batches.pipeline.scheduling). New ones are read only once their time came (the
    batch_new_not_before index): as the negation of start_blocked(), the query read every batch
    scheduled later, at every sweep."""
    due = Q(status=S.NEW) & (Q(not_before__isnull=True) | Q(not_before__lte=DatabaseNow()))
    return Batch.objects.filter(Q(status__in=ACTIVE - {S.PAUSED, S.NEW}) | due).exclude(
        Q(status=S.NEW) & waiting_on_parent()
    )


def batches_not_moving() -> QuerySet[Batch]:
    """Active batches whose status has not changed for BATCH_ALARM_AFTER_SECONDS, however often
    the sweep resumed them (which writes a heartbeat): the sweep logs each as an error."""
    return moving_batches().filter(updated_at__lt=database_now_plus(-settings.BATCH_ALARM_AFTER_SECONDS))


# Why a batch waits (docs/contract.md, accounting and waiting transparency) ---------------

# Every reason the contract names.
STATUS_REASONS = ("waiting_for_worker", "scheduled", "waiting_dependency", "paused", "running", "stalled")
# Processing's rate is measured over its last minute, once it has run this long.
RATE_WINDOW_SECONDS = 60
RATE_AFTER_SECONDS = 10
# What a worker does next in each status that is not terminal: to do, and being done.
STEP_WORDS: dict[str, tuple[str, str]] = {
    S.NEW: ("start it", "starting it"),
    S.COPYING: ("copy its file", "copying its file and computing its SHA-256"),
    S.COPIED: ("validate its lines", "validating its lines"),
    S.VALIDATING: ("validate its lines", "validating its lines"),
    S.PROCESSING: ("run its lines", "running its lines"),
    S.PROCESSED: ("write its results file", "writing its results file"),
    S.WRITING_RESULTS: ("write its results file", "writing its results file"),
    S.CANCEL: ("stop it", "stopping it; lines already running finish"),
    S.CANCELLING: ("stop it", "stopping it; lines already running finish"),
    S.DELETING: ("delete its files", "deleting its files"),
}


def parents_awaited(batch: Batch) -> str:
    parents = batch.requirements.filter(parent__status__in=ACTIVE).count()
    return "its parent batch" if parents == 1 else f"{parents} of its parent batches"


# The sentences of the reasons of section 14: a batch that waits by design.
WAIT_WORDS = {
    "scheduled": lambda batch, now: (
        f"Scheduled: it starts at {batch.not_before.isoformat()}, "
        f"in {duration_words((batch.not_before - now).total_seconds())}."
    ),
    "waiting_dependency": lambda batch, now: f"Waiting for {parents_awaited(batch)} to end.",
    "paused": lambda batch, now: (
        f"Paused: {batch.processed:,} of {batch.total or 0:,} lines ran; nothing runs until it is resumed."
    ),
}


def queued_before(batch: Batch) -> Coalesce:
    """How many of the account's batches no worker has started and were created before it (its
    queue position is one more): a batch's first step is queued when it is created, workers take
    the queue first in, first out, and the sweep asks again for lost ones oldest first. Batches
    scheduled later or waiting on a parent are in no queue."""
    earlier = Q(created_at__lt=batch.created_at) | Q(created_at=batch.created_at, uuid__lt=batch.uuid)
    queued = Batch.objects.filter(account_id=batch.account_id, status=S.NEW).exclude(start_blocked())
    counted = queued.filter(earlier).order_by().values("account_id").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted), 0)


def worker_holds(batch: Batch, now: datetime) -> bool:
    """A worker has the batch's current step: it moved in the last PIPELINE_KICK_AFTER_SECONDS
    (the worker that moved it goes on), or its step's lease or one of its chunks' is live."""
    recent = now - timedelta(seconds=settings.PIPELINE_KICK_AFTER_SECONDS)
    if batch.heartbeat_at is not None and batch.heartbeat_at > recent:
        return True
    if batch.lease_owner and batch.lease_expires_at is not None and batch.lease_expires_at > now:
        return True
    held_chunks = Chunk.objects.filter(batch_id=batch.pk, lease_expires_at__gt=now).exclude(lease_owner="")
    return batch.status in (S.VALIDATING, S.PROCESSING) and held_chunks.exists()


def batch_status_reason(batch: Batch, *, now: datetime, stalled: bool, parent_pending: bool) -> str | None:
    """The reason of a batch that has not ended; `stalled` as batches_stalled says of it,
    `parent_pending` as batches.pipeline.scheduling.waiting_on_parent does."""
    if batch.status in TERMINAL:
        return None
    if batch.status == S.PAUSED:
        return "paused"
    if batch.status == S.NEW and batch.not_before is not None and batch.not_before > now:
        return "scheduled"
    if batch.status == S.NEW and parent_pending:
        return "waiting_dependency"
    if stalled:
        return "stalled"
    if batch.status != S.NEW and worker_holds(batch, now):
        return "running"
    return "waiting_for_worker"


def processing_rate(batch: Batch, now: datetime) -> float | None:
    """Lines per second over the last RATE_WINDOW_SECONDS of processing, from the chunks done in
    it; None before a chunk ran and RATE_AFTER_SECONDS of processing passed."""
    started = batch.updated_at  # a status change is the only write of updated_at
    if batch.status != S.PROCESSING or (now - started).total_seconds() < RATE_AFTER_SECONDS:
        return None
    window_start = max(started, now - timedelta(seconds=RATE_WINDOW_SECONDS))
    done = Chunk.objects.filter(batch_id=batch.pk, done=True).aggregate(
        ran=Count("pk", filter=Q(done_at__isnull=False)),
        lines=Sum("line_count", filter=Q(done_at__gt=window_start)),
    )
    if not done["ran"]:
        return None
    return (done["lines"] or 0) / (now - window_start).total_seconds()


def waiting_description(batch: Batch, reason: str, *, now, position, eta, stalled_since) -> str:
    if reason in WAIT_WORDS:
        return WAIT_WORDS[reason](batch, now)
    to_do, doing = STEP_WORDS[batch.status]
    if reason == "stalled":
        since = duration_words((now - stalled_since).total_seconds())
        return f"Stalled: no progress for {since} while waiting for a worker to {to_do}."
    if position == 1:
        return "Waiting for a worker: it is the next of this account's batches to start."
    if position is not None:
        return f"Waiting for a worker: {position - 1} of this account's batches start before it."
    if reason == "waiting_for_worker":
        return f"Waiting for a worker to {to_do}."
    if batch.status != S.PROCESSING or batch.total is None:
        return f"Running: {doing}."
    lines = f"{batch.processed:,} of {batch.total:,} lines"
    if eta is None:
        return f"Running: {lines} so far."
    return f"Running: {lines}, about {duration_words((eta - now).total_seconds())} left."


def batch_waiting(batch: Batch) -> dict:
    """Why a batch that has not ended is where it is (docs/contract.md, accounting and waiting
    transparency): `status_reason` and a sentence for a person; `queue` (its place among its
    account's batches no worker has started) while it is new; processing's `rate_lps` and
    `eta_ts` (when processing should end at that rate); `stalled_since` (its last progress)
    while it is stalled, as batches_stalled defines it. Every value None once it has ended."""
    waiting = dict.fromkeys(
        ("status_reason", "status_reason_description", "queue", "rate_lps", "eta_ts", "stalled_since")
    )
    if batch.status in TERMINAL:
        return waiting
    # One query: POST /batches answers with this, and its every statement counts under load.
    now, stalled, parent_pending, earlier = (
        Batch.objects.filter(pk=batch.pk)
        .annotate(
            now=DatabaseNow(),
            stalled=Exists(batches_stalled().filter(pk=OuterRef("pk"))),
            parent_pending=waiting_on_parent(),
            earlier=queued_before(batch) if batch.status == S.NEW else Value(0),
        )
        .values_list("now", "stalled", "parent_pending", "earlier")
        .first()
    ) or (timezone.now(), False, False, 0)
    reason = batch_status_reason(batch, now=now, stalled=stalled, parent_pending=parent_pending)
    position = 1 + earlier if batch.status == S.NEW and reason not in WAIT_WORDS else None
    rate = processing_rate(batch, now)
    eta = None
    if rate:
        eta = now + timedelta(seconds=max(batch.total - batch.processed, 0) / rate)
    stalled_since = (batch.stalled_since or batch.heartbeat_at or batch.created_at) if stalled else None
    waiting.update(
        status_reason=reason,
        status_reason_description=waiting_description(
            batch, reason, now=now, position=position, eta=eta, stalled_since=stalled_since
        ),
        queue=None if position is None else {"position": position},
        rate_lps=None if rate is None else round(rate, 2),
        eta_ts=eta,
        stalled_since=stalled_since,
    )
    return waiting


# The failed lines a batch's page shows inline ------------------------------------------

FAILED_LINES_SHOWN = 100
# "twin: Must be a valid UUID." → field "twin"; a refusal of the operation itself names none.
FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]-]{0,127}): (.+)$", re.DOTALL)


@dataclass(frozen=True)
class FailedLine:
    line: int
    status: int | None
    subcode: str
    field: str
    reason: str


@dataclass(frozen=True)
class FailedLines:
    lines: list[FailedLine]
    # How many more the full report lists; None when it cannot be told without reading it all.
    more: int | None


def failed_line(record: dict) -> FailedLine:
    error = record.get("error") or {}
    description = str(error.get("description", ""))
    field, reason = "", description
    match = FIELD_PREFIX.match(description)
    if match:
        field, reason = match.groups()
    return FailedLine(
        line=record.get("line"),
        status=record.get("status"),
        subcode=str(error.get("subcode", "")),
        field=field,
        reason=reason,
    )


def batch_failed_lines(*, batch: Batch, limit: int = FAILED_LINES_SHOWN) -> FailedLines | None:
    """The first `limit` lines of the batch's errors file (docs/contract.md, section 6), read as a stream,
    and how many more it holds; None when the batch has no failed lines to show."""
    if not batch.errors_file:
        return None
    finished_with_failures = (
        batch.status in (BatchStatus.COMPLETED, BatchStatus.CANCELLED) and batch.failed > 0
    )
    if batch.status != BatchStatus.VALIDATION_FAILED and not finished_with_failures:
        return None
    lines, remaining = [], 0
    with default_storage.open(batch.errors_file, "rb") as errors:
        for raw in errors:
            if len(lines) < limit:
                lines.append(failed_line(json.loads(raw)))
            elif batch.status == BatchStatus.VALIDATION_FAILED:
                # The report is capped at VALIDATION_REPORT_MAX_LINES lines: counting is cheap.
                remaining += 1
            else:
                break
    if batch.status == BatchStatus.VALIDATION_FAILED:
        more = remaining
    elif batch.total is not None:
        # The errors file holds every line that did not succeed (failed or never ran).
        more = max(batch.total - batch.succeeded - len(lines), 0)
    else:
        more = None
    return FailedLines(lines=lines, more=more)

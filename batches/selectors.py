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
from django.db.models import Q, QuerySet
from django.http import Http404

from batches.models import Batch, BatchStatus, Upload
from batches.statuses import ACTIVE
from batchsite.clock import database_now_plus
from batchsite.paging import cursor_encode, rows_after
from permissions.models import Account

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
    sweep resumes (processing ones, after BATCH_STUCK_AFTER_SECONDS)."""
    seconds = settings.BATCH_STALL_AFTER_SECONDS if after_seconds is None else after_seconds
    return Batch.objects.filter(status__in=ACTIVE).filter(silent_for(seconds))


def batches_not_moving() -> QuerySet[Batch]:
    """Active batches whose status has not changed for BATCH_ALARM_AFTER_SECONDS, however often
    the sweep resumed them (which writes a heartbeat): the sweep logs each as an error."""
    return Batch.objects.filter(
        status__in=ACTIVE, updated_at__lt=database_now_plus(-settings.BATCH_ALARM_AFTER_SECONDS)
    )


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

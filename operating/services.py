"""Writes for usage and quotas (docs/contract.md, section 12).

Counting is exact and cheap:
- a batch's lines are counted by the chunk that runs them, by an upsert inside the chunk's
  own transaction, so a chunk that rolls back (a killed worker) counts nothing and a chunk
  counts once however often it is re-delivered;
- a batch is counted by the transaction that creates it, an upload by the one that stores it;
- API calls and quota refusals are counted in this process's memory and written every
  USAGE_FLUSH_SECONDS, one upsert per account, user and hour, never a write per request.
"""

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from batches.models import Batch, BatchStatus
from batches.statuses import ACTIVE
from batchsite.clock import DatabaseNow, database_now_plus
from batchsite.errors import ApplicationError
from operating import metrics
from operating.models import (
    NO_USER,
    USAGE_COUNTERS,
    AccountQuota,
    LinesMinute,
    QuotaRefusalHour,
    UsageHour,
    WorkerHeartbeat,
    hour_of,
)
from permissions.counters import counters_prune
from permissions.models import Account

logger = logging.getLogger(__name__)


def _upsert(model, *, keys: dict, counters: tuple[str, ...], add: dict) -> None:
    """`INSERT … ON CONFLICT (keys) DO UPDATE SET n = n + k`: one statement, no read, safe
    against any number of concurrent writers (SQLite and PostgreSQL alike)."""
    meta = model._meta
    values = {**keys, **{name: add.get(name, 0) for name in counters}}
    fields = [meta.get_field(name) for name in values]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    conflict = ", ".join(connection.ops.quote_name(meta.get_field(name).column) for name in keys)
    updates = ", ".join(
        f"{quoted} = current.{quoted} + EXCLUDED.{quoted}"
        for quoted in (connection.ops.quote_name(meta.get_field(name).column) for name in add)
    )
    params = [
        field.get_db_prep_value(value, connection)
        for field, value in zip(fields, values.values(), strict=True)
    ]
    placeholders = ", ".join(["%s"] * len(params))
    table = connection.ops.quote_name(meta.db_table)
    sql = (
        f"INSERT INTO {table} AS current ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _usage_add(*, account_id, user_id, hour: datetime, **add) -> None:
    keys = {"account": account_id, "user": user_id or NO_USER, "hour": hour}
    _upsert(UsageHour, keys=keys, counters=USAGE_COUNTERS, add=add)


# Counted where the work commits ---------------------------------------------------------


def usage_record_batch_lines(
    *, account_id, user_id, lines: int, failed: int, operation: str = "", seconds: float | None = None
) -> None:
    """Called by a chunk inside its own transaction, once its lines ran: their count goes
    into the account's (and user's) hour and the dashboard's minute, and, once the chunk
    commits, into the metrics."""
    now = timezone.now()
    if lines:
        _usage_add(
            account_id=account_id,
            user_id=user_id,
            hour=hour_of(now),
            batch_lines=lines,
            batch_lines_failed=failed,
        )
        minute = now.astimezone(UTC).replace(second=0, microsecond=0)
        _upsert(
            LinesMinute,
            keys={"minute": minute, "account": account_id},
            counters=("lines", "failed"),
            add={"lines": lines, "failed": failed},
        )

    def observe():
        metrics.batch_lines_processed.labels(operation, "succeeded").inc(lines - failed)
        metrics.batch_lines_processed.labels(operation, "failed").inc(failed)
        if seconds is not None:
            metrics.batch_chunk_seconds.observe(seconds)

    transaction.on_commit(observe)


def usage_record_upload(*, account_id, user_id, size: int) -> None:
    """Called when an upload's bytes are stored (or found in the bucket), in that transaction."""
    _usage_add(account_id=account_id, user_id=user_id, hour=hour_of(timezone.now()), upload_bytes=size)


# Quotas --------------------------------------------------------------------------------


class QuotaExceeded(ApplicationError):
    """429 `quota_exceeded`; `retry_after` (seconds) when waiting helps."""

    def __init__(self, description: str, *, quota: str, retry_after: int | None = None):
        super().__init__(description, subcode="quota_exceeded", status_code=429)
        self.quota = quota
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    max_active_batches: int
    max_batch_lines_per_day: int
    max_upload_bytes: int


def quota_limits(quota: AccountQuota | None) -> Limits:
    def pick(name: str, default: int) -> int:
        value = getattr(quota, name, None) if quota is not None else None
        return default if value is None else value

    return Limits(
        max_active_batches=pick("max_active_batches", settings.QUOTA_MAX_ACTIVE_BATCHES),
        max_batch_lines_per_day=pick("max_batch_lines_per_day", settings.QUOTA_MAX_BATCH_LINES_PER_DAY),
        max_upload_bytes=pick("max_upload_bytes", settings.QUOTA_MAX_UPLOAD_BYTES),
    )


def _refuse(*, account_id, quota: str, description: str, retry_after: int | None = None) -> QuotaExceeded:
    refusal_count(account_id=account_id, quota=quota)
    return QuotaExceeded(description, quota=quota, retry_after=retry_after)


def seconds_to_next_utc_day(now: datetime) -> int:
    tomorrow = (now.astimezone(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((tomorrow - now).total_seconds()))


def lines_committed_today(*, account_id, now: datetime) -> int:
    """Lines run today (UTC) plus lines validated and still to run in active batches: what
    the account has already taken of today's quota."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    ran = (
        UsageHour.objects.filter(account_id=account_id, hour__gte=day)
        .order_by()
        .values("account_id")
        .annotate(n=Sum("batch_lines"))
        .values("n")
    )
    pending = (
        Batch.objects.filter(account_id=account_id, status=BatchStatus.PROCESSING, total__isnull=False)
        .order_by()
        .values("account_id")
        .annotate(n=Sum(F("total") - F("processed")))
        .values("n")
    )
    # One statement for both: POST /batches asks this in its transaction, under the quota lock.
    return (
        Account.objects.filter(pk=account_id)
        .annotate(taken=Coalesce(Subquery(ran), 0) + Coalesce(Subquery(pending), 0))
        .values_list("taken", flat=True)
        .get()
    )


def _quota_row_locked(account_id) -> AccountQuota:
    """The account's quota row, locked until the transaction ends; written first if missing
    (every account has it after its first create, so that is one statement, not two)."""
    quota = AccountQuota.objects.select_for_update().filter(account_id=account_id).first()
    if quota is None:
        AccountQuota.objects.bulk_create([AccountQuota(account_id=account_id)], ignore_conflicts=True)
        quota = AccountQuota.objects.select_for_update().get(account_id=account_id)
    return quota


def usage_admit_batch(*, account_id, user_id) -> None:
    """Called by batch_create inside its transaction, before the batch row is written.

    Takes the account's quota row lock, so two creates racing for the last free place take
    turns and the second sees the first's batch; then checks max_active_batches and
    max_batch_lines_per_day and counts the batch in the account's hour. A batch's own line
    count is known only once it is validated, so a batch is admitted while the day's lines
    are under the quota and then runs in full (see docs/operations.md#usage-quotas-and-throttling)."""
    limits = quota_limits(_quota_row_locked(account_id))
    active = Batch.objects.filter(account_id=account_id, status__in=ACTIVE).count()
    if active >= limits.max_active_batches:
        raise _refuse(
            account_id=account_id,
            quota="max_active_batches",
            description=f"The account has {active} unfinished batches; max_active_batches is "
            f"{limits.max_active_batches}. Create it when one finishes.",
            retry_after=settings.QUOTA_ACTIVE_BATCHES_RETRY_AFTER,
        )
    now = timezone.now()
    taken = lines_committed_today(account_id=account_id, now=now)
    if taken >= limits.max_batch_lines_per_day:
        raise _refuse(
            account_id=account_id,
            quota="max_batch_lines_per_day",
            description=f"The account has run or queued {taken} batch lines today (UTC); "
            f"max_batch_lines_per_day is {limits.max_batch_lines_per_day}.",
            retry_after=seconds_to_next_utc_day(now),
        )
    _usage_add(account_id=account_id, user_id=user_id, hour=hour_of(now), batches_created=1)
    transaction.on_commit(lambda: metrics.batch_transitions.labels(BatchStatus.NEW).inc())


QUOTA_EXCEEDED = "quota_exceeded"


def usage_admit_batch_lines(*, account_id, lines: int) -> str:
    """Called when validation has counted a batch's lines, inside the transaction that would
    start running them; holds the account's quota row lock until it commits, so two batches
    validated at once take turns. Returns why the lines may not run (they would take the
    day's run and queued lines past max_batch_lines_per_day), or "". Creating a batch only
    checks the day is not yet full; without this, max_active_batches batches of
    BATCH_MAX_LINES lines each could all run past the quota."""
    limit = quota_limits(_quota_row_locked(account_id)).max_batch_lines_per_day
    taken = lines_committed_today(account_id=account_id, now=timezone.now())
    if taken + lines <= limit:
        return ""
    refusal_count(account_id=account_id, quota="max_batch_lines_per_day")
    return (
        f"{QUOTA_EXCEEDED}: the batch's {lines} lines and the {taken} the account has run or queued "
        f"today (UTC) are more than max_batch_lines_per_day, {limit}; no line ran."
    )


def quota_check_upload(*, account_id, size: int) -> None:
    """An upload larger than the account's max_upload_bytes is refused (waiting won't help)."""
    limit = quota_limits(AccountQuota.objects.filter(account_id=account_id).first()).max_upload_bytes
    if size > limit:
        raise _refuse(
            account_id=account_id,
            quota="max_upload_bytes",
            description=f"The file is {size} bytes; the account's max_upload_bytes is {limit}.",
        )


# Counted in memory, written every few seconds ---------------------------------------------


class _Pending:
    lock = threading.Lock()
    api_calls: Counter = Counter()
    refusals: Counter = Counter()
    flushed_at = time.monotonic()


def api_call_count(*, account_id, user_id) -> None:
    key = (str(account_id), str(user_id or NO_USER), hour_of(timezone.now()))
    with _Pending.lock:
        _Pending.api_calls[key] += 1


def refusal_count(*, account_id, quota: str) -> None:
    """A refusal by a quota or the throttle, for the dashboard and the metrics. Kept in memory
    because the refused request's transaction rolls back."""
    metrics.quota_refusals.labels(quota).inc()
    key = (str(account_id), quota, hour_of(timezone.now()))
    with _Pending.lock:
        _Pending.refusals[key] += 1


def usage_flush(*, force: bool = False) -> None:
    """Writes this process's pending counts, when USAGE_FLUSH_SECONDS have passed (or now,
    with `force`). Called after each request and before /usage is read; counts that fail to
    write stay pending for the next flush."""
    with _Pending.lock:
        due = time.monotonic() - _Pending.flushed_at >= settings.USAGE_FLUSH_SECONDS
        if not (force or due) or not (_Pending.api_calls or _Pending.refusals):
            return
        calls, refusals = _Pending.api_calls, _Pending.refusals
        _Pending.api_calls, _Pending.refusals = Counter(), Counter()
        _Pending.flushed_at = time.monotonic()
    try:
        with transaction.atomic():
            for (account_id, user_id, hour), count in sorted(calls.items()):
                _usage_add(account_id=account_id, user_id=user_id, hour=hour, api_calls=count)
            for (account_id, quota, hour), count in sorted(refusals.items()):
                _upsert(
                    QuotaRefusalHour,
                    keys={"account": account_id, "quota": quota, "hour": hour},
                    counters=("count",),
                    add={"count": count},
                )
    except Exception:
        logger.exception("could not write usage counts; keeping them for the next flush")
        with _Pending.lock:
            _Pending.api_calls.update(calls)
            _Pending.refusals.update(refusals)


def usage_prune() -> dict:
    now = timezone.now()
    keep_from = now - timedelta(days=settings.USAGE_RETENTION_DAYS)
    return {
        "usage_hours": UsageHour.objects.filter(hour__lt=keep_from).delete()[0],
        "refusal_hours": QuotaRefusalHour.objects.filter(hour__lt=keep_from).delete()[0],
        "line_minutes": LinesMinute.objects.filter(minute__lt=now - timedelta(days=2)).delete()[0],
        "ended_counter_windows": counters_prune(),
    }


def worker_heartbeat_record(*, node: str, queues: list[str]) -> None:
    """The node is alive now, in the database's time; rows of nodes gone for a day go."""
    fields = {"queues": ",".join(sorted(queues)), "seen_at": DatabaseNow()}
    if not WorkerHeartbeat.objects.filter(node=node).update(**fields):
        try:
            with transaction.atomic():
                WorkerHeartbeat.objects.create(node=node, **fields)
        except IntegrityError:  # a node of the same name wrote first: it is alive either way
            pass
    WorkerHeartbeat.objects.filter(seen_at__lt=database_now_plus(-86400)).delete()


def worker_heartbeat_remove(*, node: str) -> None:
    """A node that stops says so, so it stops counting at once rather than after WORKER_ALIVE_SECONDS."""
    WorkerHeartbeat.objects.filter(node=node).delete()

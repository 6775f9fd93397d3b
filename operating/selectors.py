"""Reads for usage, quotas and the staff dashboard."""

from datetime import UTC, timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.utils import timezone

from batches import selectors as batch_selectors
from batches.models import Batch, MaintenanceRun
from batches.statuses import ACTIVE
from batchsite.clock import DatabaseNow, database_now_plus
from operating.models import (
    USAGE_COUNTERS,
    LinesMinute,
    QuotaRefusalHour,
    UsageHour,
    WorkerHeartbeat,
    hour_of,
)
from permissions.models import Account

USAGE_DAYS = 7


def usage_hours(*, account_id, user_id=None) -> dict[str, dict[str, int]]:
    """`{"YYYY-MM-DD-HH": {counter: n}}` for the hours (UTC) of the last 7 days with activity,
    oldest first; the account's (every user's) or one user's."""
    since = hour_of(timezone.now()) - timedelta(days=USAGE_DAYS)
    rows = UsageHour.objects.filter(account_id=account_id, hour__gt=since)
    if user_id is not None:
        rows = rows.filter(user=user_id)
    totals = rows.values("hour").annotate(**{name: Sum(name) for name in USAGE_COUNTERS}).order_by("hour")
    usage = {}
    for row in totals:
        counts = {name: int(row[name] or 0) for name in USAGE_COUNTERS}
        if any(counts.values()):
            usage[row["hour"].astimezone(UTC).strftime("%Y-%m-%d-%H")] = counts
    return usage


def batches_active_by_status() -> dict[str, int]:
    counts = dict.fromkeys(sorted(ACTIVE), 0)
    for row in Batch.objects.filter(status__in=ACTIVE).values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    return counts


def batches_stalled() -> int:
    """How many batches have stalled (batches.selectors.batches_stalled, the one definition)."""
    return batch_selectors.batches_stalled().count()


def sweep_age_seconds() -> float | None:
    """Seconds since the maintenance sweep last started, in the database's time (as its claim
    wrote it, so no host's clock enters the age); None before it ever ran."""
    age = (
        MaintenanceRun.objects.filter(name="sweep")
        .annotate(age=ExpressionWrapper(DatabaseNow() - F("started_at"), output_field=DurationField()))
        .values_list("age", flat=True)
        .first()
    )
    return None if age is None else age.total_seconds()


def worker_queues() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def workers_alive_by_queue() -> dict[str, int]:
    """{queue: worker nodes consuming it seen in the last WORKER_ALIVE_SECONDS}, every queue
    of the settings listed, by the database's clock."""
    alive = WorkerHeartbeat.objects.filter(seen_at__gte=database_now_plus(-settings.WORKER_ALIVE_SECONDS))
    counts = dict.fromkeys(worker_queues(), 0)
    for queues in alive.values_list("queues", flat=True):
        for queue in queues.split(","):
            if queue in counts:
                counts[queue] += 1
    return counts


def workers_alive() -> int:
    return WorkerHeartbeat.objects.filter(
        seen_at__gte=database_now_plus(-settings.WORKER_ALIVE_SECONDS)
    ).count()


def pipeline_health() -> dict:
    """What /healthz reports of the pipeline for alerts, never failing the check."""
    age = sweep_age_seconds()
    return {
        "workers_alive": workers_alive(),
        "sweep_age_seconds": None if age is None else round(age, 1),
        "stalled_batches": batches_stalled(),
    }


def batches_by_status() -> list[tuple[str, int]]:
    rows = Batch.objects.values("status").annotate(n=Count("pk")).order_by("-n", "status")
    return [(row["status"], row["n"]) for row in rows]


def lines_per_minute(*, hours: int) -> list[tuple]:
    """(minute, lines, failed) for every minute of the last `hours`, zeros included."""
    end = timezone.now().astimezone(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(hours=hours) + timedelta(minutes=1)
    found = {
        row["minute"].astimezone(UTC): (row["lines"], row["failed"])
        for row in LinesMinute.objects.filter(minute__gte=start, minute__lte=end)
        .values("minute")
        .annotate(lines=Sum("lines"), failed=Sum("failed"))
        .order_by()
    }
    series = []
    minute = start
    while minute <= end:
        lines, failed = found.get(minute, (0, 0))
        series.append((minute, lines, failed))
        minute += timedelta(minutes=1)
    return series


def busiest_accounts(*, hours: int = 24, limit: int = 10) -> list[dict]:
    since = hour_of(timezone.now()) - timedelta(hours=hours - 1)
    rows = (
        UsageHour.objects.filter(hour__gte=since)
        .values("account")
        .annotate(**{name: Sum(name) for name in USAGE_COUNTERS})
        .filter(Q(batch_lines__gt=0) | Q(api_calls__gt=0) | Q(batches_created__gt=0))
        .order_by("-batch_lines", "-api_calls")[:limit]
    )
    names = dict(Account.objects.filter(pk__in=[row["account"] for row in rows]).values_list("pk", "name"))
    return [{**row, "name": names.get(row["account"], "(deleted)")} for row in rows]


def quota_refusals(*, hours: int = 24, limit: int = 20) -> list[dict]:
    since = hour_of(timezone.now()) - timedelta(hours=hours - 1)
    rows = (
        QuotaRefusalHour.objects.filter(hour__gte=since)
        .values("account", "quota")
        .annotate(count=Sum("count"))
        .order_by("-count")[:limit]
    )
    names = dict(Account.objects.filter(pk__in=[row["account"] for row in rows]).values_list("pk", "name"))
    return [{**row, "name": names.get(row["account"], "(deleted)")} for row in rows]

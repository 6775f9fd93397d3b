"""How a batch's status and progress read to a person, on the pages and in the admin."""

import json

from django import template

from batches.models import Batch, BatchStatus
from batches.statuses import ACTIVE, TERMINAL

register = template.Library()

S = BatchStatus
STOPPED = frozenset({S.CANCEL, S.CANCELLING, S.CANCELLED})
FAILED = frozenset({S.HASH_MISMATCH, S.VALIDATION_FAILED})


@register.filter
def status_label(status: str) -> str:
    return status.replace("_", " ")


@register.filter
def status_tone(status: str) -> str:
    """The colour family of a status badge (a CSS class suffix)."""
    if status == S.COMPLETED:
        return "done"
    if status in FAILED:
        return "failed"
    if status in STOPPED:
        return "stopped"
    if status in ACTIVE:
        return "active"
    return "muted"


@register.filter
def progress_percent(batch: Batch) -> int | None:
    """Whole percent of lines processed; None while the line count is not known yet."""
    if batch.status == S.COMPLETED:
        return 100
    if batch.total is None:
        return None
    if batch.total == 0:
        return 100 if batch.status in TERMINAL else 0
    return min(100, batch.processed * 100 // batch.total)


@register.filter
def pretty_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@register.filter
def clock_time(moment) -> str:
    """Time of day to the millisecond: pipeline steps are often less than a second apart."""
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


@register.filter
def error_budget_text(budget: dict | None) -> str:
    """An error budget as a person reads it, e.g. "more than 10 failed lines, or more than 5 %
    of the lines run (from 100 lines on)"."""
    if not budget:
        return "none"
    limits = []
    if "max_failed" in budget:
        limits.append(f"more than {budget['max_failed']} failed lines")
    if "max_failed_ratio" in budget:
        limits.append(
            f"more than {budget['max_failed_ratio'] * 100:g} % of the lines run failed "
            f"(from {budget['min_lines']} lines on)"
        )
    return "stop at " + ", or ".join(limits)

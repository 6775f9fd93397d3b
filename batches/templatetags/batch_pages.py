"""How a batch's status and progress read to a person, on the pages and in the admin."""

import json
import re
from dataclasses import dataclass

from django import template
from django.template.defaultfilters import pluralize

from batches.controls import EXCEEDED, is_budget_stop
from batches.models import Batch, BatchStatus, DependencyRequirement
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
    if status in STOPPED or status == S.PAUSED:
        return "stopped"
    if status in ACTIVE:
        return "active"
    return "muted"


REQUIREMENT_WORDS = {
    DependencyRequirement.COMPLETED: "completed",
    DependencyRequirement.NO_FAILURES: "completed with no failed line",
    DependencyRequirement.TERMINAL: "ended, however it ended",
}


@register.filter
def requirement_words(require: str) -> str:
    """What an `after` requirement waits for, in words."""
    return REQUIREMENT_WORDS.get(require, require)


@dataclass(frozen=True)
class Outcome:
    """A batch's badge: its status, told apart by what happened to its lines."""

    label: str
    tone: str


@register.filter
def outcome(batch: Batch) -> Outcome:
    """A dry run, a run with failed lines and a run stopped by its failure limit each read
    differently from a plain "completed" or "cancelled"."""
    if batch.status == S.COMPLETED:
        if batch.validate_only:
            return Outcome("dry run", "dry")
        if batch.failed:
            return Outcome("completed with failures", "partial")
    if batch.status == S.CANCELLED and is_budget_stop(batch.failure_reason):
        return Outcome("stopped: too many failures", "failed")
    return Outcome(status_label(batch.status), status_tone(batch.status))


@register.filter
def batch_name(batch: Batch) -> str:
    """The name a person gave the batch: its `batch_dict` label `name` (the upload form puts
    the file's name there), or "" without one."""
    name = (batch.batch_dict or {}).get("name") if isinstance(batch.batch_dict, dict) else None
    return name.strip() if isinstance(name, str) else ""


@register.filter
def never_run(batch: Batch) -> int | None:
    """Lines a stopped batch never ran; None when its line count is not known."""
    return None if batch.total is None else max(batch.total - batch.processed, 0)


@dataclass(frozen=True)
class Reason:
    subcode: str
    words: str


# As controls.budget_exceeded words the API's reason: "… 50 of 500 lines failed … max_failed 5."
# or "… max_failed_ratio 0.05 once 100 lines ran."
BUDGET_REASON = re.compile(
    r"(?P<failed>\d+) of (?P<run>\d+) lines failed.*?"
    r"(?:max_failed_ratio (?P<ratio>[\d.e-]+)|max_failed (?P<max_failed>\d+))"
)


@register.filter
def reason(batch: Batch) -> Reason | None:
    """Why the batch stopped, in plain words, beside the subcode a script would see."""
    text = batch.failure_reason
    if not text:
        return None
    if is_budget_stop(text):
        match = BUDGET_REASON.search(text)
        if match is None:
            return Reason(EXCEEDED, text.removeprefix(f"{EXCEEDED}: "))
        if match["ratio"]:
            limit = f"your {float(match['ratio']) * 100:g} % limit"
        else:
            limit = f"your limit of {match['max_failed']} failed line{pluralize(int(match['max_failed']))}"
        failed = f"{match['failed']} of {match['run']} lines failed"
        return Reason(EXCEEDED, f"stopped: {failed}, more than {limit}")
    subcode = batch.status if batch.status in FAILED else ""
    return Reason(subcode, text)


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

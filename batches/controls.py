"""Batch controls (docs/contract.md, section 11): the error budget and its judgement.

An error budget is `{"max_failed": int >= 0}` and/or `{"max_failed_ratio": number in (0, 1],
"min_lines": int >= 1, default 100}`. It is passed when the failed lines are more than
`max_failed`, or (once at least `min_lines` lines ran) when failed / processed is more than
`max_failed_ratio`. A batch with fewer lines than `min_lines` is never judged by the ratio.
"""

import math

from django.core.exceptions import ValidationError

DEFAULT_MIN_LINES = 100
BUDGET_KEYS = ("max_failed", "max_failed_ratio", "min_lines")
EXCEEDED = "error_budget_exceeded"


def _refuse(message: str) -> ValidationError:
    return ValidationError(f"error_budget: {message}", code="invalid_error_budget")


def _whole_number(value) -> int | None:
    """The value as an int when it is a whole number (JSON Schema counts 2.0 as an integer,
    so the schema and the API agree); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _max_failed_clean(value) -> int:
    max_failed = _whole_number(value)
    if max_failed is None or max_failed < 0:
        raise _refuse("max_failed must be an integer of 0 or more.")
    return max_failed


def _ratio_clean(value: dict) -> dict:
    """max_failed_ratio with its min_lines (defaulted) from a budget that has a ratio."""
    ratio = value["max_failed_ratio"]
    if (
        isinstance(ratio, bool)
        or not isinstance(ratio, int | float)
        or not math.isfinite(ratio)
        or not 0 < ratio <= 1
    ):
        raise _refuse("max_failed_ratio must be a number above 0 and at most 1.")
    min_lines = _whole_number(value.get("min_lines", DEFAULT_MIN_LINES))
    if min_lines is None or min_lines < 1:
        raise _refuse("min_lines must be an integer of 1 or more.")
    return {"max_failed_ratio": ratio, "min_lines": min_lines}


def error_budget_clean(value) -> dict | None:
    """The budget as stored and shown back (min_lines filled in with a ratio); None for none.
    Refuses anything else with the subcode invalid_error_budget."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _refuse("must be an object with max_failed and/or max_failed_ratio.")
    unknown = sorted(set(value) - set(BUDGET_KEYS))
    if unknown:
        raise _refuse(f"unknown key {unknown[0]!r}; the keys are {', '.join(BUDGET_KEYS)}.")
    if "max_failed" not in value and "max_failed_ratio" not in value:
        raise _refuse("give max_failed, max_failed_ratio or both.")
    budget = {}
    if "max_failed" in value:
        budget["max_failed"] = _max_failed_clean(value["max_failed"])
    if "max_failed_ratio" in value:
        budget.update(_ratio_clean(value))
    elif "min_lines" in value:
        raise _refuse("min_lines goes with max_failed_ratio.")
    return budget


def budget_exceeded(budget: dict | None, *, processed: int, failed: int) -> str:
    """Why the budget is passed at these counts (the batch's `reason`), or "" while it holds."""
    if not budget:
        return ""
    max_failed = budget.get("max_failed")
    if max_failed is not None and failed > max_failed:
        return f"{EXCEEDED}: {failed} of {processed} lines failed, more than max_failed {max_failed}."
    ratio = budget.get("max_failed_ratio")
    if ratio is not None and processed >= budget["min_lines"] and failed > ratio * processed:
        return (
            f"{EXCEEDED}: {failed} of {processed} lines failed ({failed / processed:.1%}), more than "
            f"max_failed_ratio {ratio} once {budget['min_lines']} lines ran."
        )
    return ""


def is_budget_stop(reason: str) -> bool:
    return reason.startswith(EXCEEDED)

"""How a batch's wait and its totals read to a person (docs/contract.md, accounting and waiting
transparency), on the pages and in the admin: why it waits, its place in the queue, when it
should end, since when it stalled, and its summary as small tables."""

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from batches import selectors
from batches.durations import time_since, time_until
from batches.models import Batch
from batches.statuses import TERMINAL
from batches.templatetags.batch_pages import status_label
from batchsite.timestamps import to_ts

# The colour of a reason's badge (a pages.css badge-* suffix): a stall is what needs a look.
REASON_TONES = {"running": "active", "stalled": "failed", "paused": "stopped"}


@dataclass(frozen=True)
class Moment:
    """A time as the page shows it: `clock` in UTC for the server's rendering, `at` (Unix
    seconds) for the browser to show in its own time zone, and how far it is from now."""

    at: float
    clock: str
    relative: str


def moment(when: datetime, *, now: datetime, relative: str) -> Moment:
    clock = f"{when:%H:%M} UTC" if when.date() == now.date() else f"{when:%Y-%m-%d %H:%M} UTC"
    return Moment(at=to_ts(when), clock=clock, relative=relative)


def due(when: datetime, *, now: datetime) -> Moment:
    return moment(when, now=now, relative=time_until((when - now).total_seconds()))


def since(when: datetime, *, now: datetime) -> Moment:
    return moment(when, now=now, relative=time_since((now - when).total_seconds()))


@dataclass(frozen=True)
class Waiting:
    reason: str
    label: str
    tone: str
    description: str
    queue_position: int | None
    rate: str | None
    eta: Moment | None
    stalled_since: Moment | None


def batch_waiting_words(batch: Batch) -> Waiting | None:
    """Why the batch is where it is and when it should end; None once it has ended."""
    if batch.status in TERMINAL:
        return None
    waiting = selectors.batch_waiting(batch)
    reason = waiting["status_reason"]
    if not reason:
        return None
    now = timezone.now()
    eta, stalled_since, rate = waiting["eta_ts"], waiting["stalled_since"], waiting["rate_lps"]
    return Waiting(
        reason=reason,
        label=status_label(reason),
        tone=REASON_TONES.get(reason, "muted"),
        description=waiting["status_reason_description"],
        queue_position=(waiting["queue"] or {}).get("position"),
        rate=None if rate is None else f"{rate:,.1f} lines/s",
        eta=None if eta is None else due(eta, now=now),
        stalled_since=None if stalled_since is None else since(stalled_since, now=now),
    )


@dataclass(frozen=True)
class SubcodeRow:
    subcode: str
    count: int
    first_lines: str


@dataclass(frozen=True)
class FileRow:
    name: str
    lines: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SummaryTables:
    total: int
    succeeded: int
    failed: int
    not_executed: int
    partial: bool
    subcodes: list[SubcodeRow]
    files: list[FileRow]


FILE_NAMES = [("results", "Results"), ("errors", "Errors only")]


def summary_tables(summary: dict) -> SummaryTables:
    """The summary's counts, its subcodes as the selector orders them (most lines first), each
    with its first line numbers ("…" when more lines carry it), and its files."""
    return SummaryTables(
        total=summary["total"],
        succeeded=summary["succeeded"],
        failed=summary["failed"],
        not_executed=summary["not_executed"],
        partial=bool(summary.get("partial")),
        subcodes=[
            SubcodeRow(
                subcode=subcode,
                count=counted["count"],
                first_lines=", ".join(map(str, counted["lines"]))
                + (", …" if counted["count"] > len(counted["lines"]) else ""),
            )
            for subcode, counted in summary["by_subcode"].items()
        ],
        files=[
            FileRow(
                name=name,
                lines=summary[part]["lines"],
                bytes=summary[part]["bytes"],
                sha256=summary[part]["sha256"],
            )
            for part, name in FILE_NAMES
            if summary.get(part)
        ],
    )


def batch_summary_tables(batch: Batch) -> SummaryTables | None:
    summary = selectors.batch_summary(batch)
    return None if summary is None else summary_tables(summary)

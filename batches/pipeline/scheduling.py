"""Time and order (docs/contract.md, section 14): when a new batch may start, and the deadline
that stops a batch.

A waiting batch costs nothing: no task waits for it and the sweep does not ask for it. It is
asked for once when it may start: by the sweep, once its `not_before` passed (one indexed query
for every batch that became due), or by the step that ended its last parent (`dependents_settle`,
which the sweep backs up). Its first step (`batch_start`) decides under the batch's row lock: it
starts, stays new, or, when a requirement can no longer be met or its deadline passed, is
stopped as a cancel stops it, with the reason.
"""

import logging
from collections.abc import Callable

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from batches.models import Batch, BatchDependency, BatchStatus, DependencyRequirement
from batches.states import batch_transition
from batches.statuses import CANCELLABLE, TERMINAL
from batchsite.clock import DatabaseNow

logger = logging.getLogger(__name__)
S = BatchStatus
R = DependencyRequirement
DEADLINE_EXCEEDED = "deadline_exceeded"
DEPENDENCY_FAILED = "dependency_failed"
# A parent in one of these will not change its outcome; a parent row gone (null) was deleted.
PARENT_ENDED = frozenset(TERMINAL | {S.DELETING})
PARENT_GOING = frozenset(S) - PARENT_ENDED


def requirement_met() -> Q:
    """Dependency rows whose requirement holds: `terminal` by any end or a deletion;
    `completed` by a completed parent; `no_failures` by a completed parent with no failed line."""
    return (
        Q(require=R.TERMINAL) & (Q(parent__isnull=True) | Q(parent__status__in=PARENT_ENDED))
        | Q(require=R.COMPLETED, parent__status=S.COMPLETED)
        | Q(require=R.NO_FAILURES, parent__status=S.COMPLETED, parent__failed=0)
    )


def requirement_failed() -> Q:
    """Dependency rows whose requirement can no longer hold: the parent ended otherwise, or
    was deleted (a deleted parent's outcome is unknown)."""
    ended_otherwise = Q(parent__isnull=True) | Q(parent__status__in=PARENT_ENDED - {S.COMPLETED})
    return Q(require__in=[R.COMPLETED, R.NO_FAILURES]) & ended_otherwise | Q(
        require=R.NO_FAILURES, parent__status=S.COMPLETED, parent__failed__gt=0
    )


def requirement_pending() -> Q:
    """Dependency rows whose parent has not ended."""
    return Q(parent__status__in=PARENT_GOING)


def waiting_on_parent() -> Exists:
    """Batches with a requirement still pending (the parent has not ended)."""
    return Exists(BatchDependency.objects.filter(batch_id=OuterRef("pk")).filter(requirement_pending()))


def start_blocked() -> Q:
    """New batches that must not start yet: scheduled later, or waiting on a parent."""
    return Q(status=S.NEW) & (Q(not_before__gt=DatabaseNow()) | waiting_on_parent())


def dependency_failure(batch_id) -> str:
    """Why one of the batch's requirements can no longer be met, or ""."""
    failed = (
        BatchDependency.objects.filter(batch_id=batch_id)
        .filter(requirement_failed())
        .select_related("parent")
        .order_by("pk")
        .first()
    )
    if failed is None:
        return ""
    if failed.parent is None:
        ended = "was deleted"
    elif failed.parent.status == S.COMPLETED:
        ended = f"completed with {failed.parent.failed} failed lines"
    else:
        ended = f"ended {failed.parent.status}"
    required = f"this batch required it {failed.require}"
    return f"{DEPENDENCY_FAILED}: batch {failed.parent_uuid} {ended}; {required}."


def deadline_reason(deadline_at) -> str:
    return f"{DEADLINE_EXCEEDED}: the deadline {deadline_at.isoformat()} passed before the batch ended."


def is_deadline_stop(reason: str) -> bool:
    return reason.startswith(DEADLINE_EXCEEDED)


def overdue() -> Q:
    return Q(deadline_at__lte=DatabaseNow())


def is_overdue() -> Q:
    """Batches past their deadline (the batch_deadline index)."""
    return Q(deadline_at__isnull=False) & overdue()


def stop(batch_id, reason: str, *, allowed_from) -> Batch | None:
    """Stops the batch as a cancel does, with `reason` as its failure reason."""
    return batch_transition(
        batch_id=batch_id, to=S.CANCEL, allowed_from=allowed_from, note=reason, failure_reason=reason
    )


def deadline_stop(batch_id) -> Batch | None:
    """Stops the batch if its deadline has passed (by the database's clock) and it can still be
    stopped; judged under its row lock, so a completion, a pause or a cancel racing it yields
    one outcome. A row another process holds is skipped: the next claim or sweep comes back."""
    with transaction.atomic():
        batch = (
            Batch.objects.select_for_update(skip_locked=True)
            .filter(overdue(), pk=batch_id, status__in=CANCELLABLE)
            .only("deadline_at", "status")
            .first()
        )
        if batch is None:
            return None
        logger.info("batch %s: deadline %s passed; stopping it", batch_id, batch.deadline_at.isoformat())
        return stop(batch_id, deadline_reason(batch.deadline_at), allowed_from=[batch.status])


def batch_start(batch_id) -> None:
    """A new batch's first step: it starts (new -> copying) when it may; it is stopped when its
    deadline passed or a requirement can no longer be met; otherwise it stays new, and the sweep
    or its parent's end asks for it again."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id, status=S.NEW).first()
        if batch is None:
            return
        if deadline_stop(batch_id) is not None:
            return
        reason = dependency_failure(batch_id)
        if reason:
            stop(batch_id, reason, allowed_from=[S.NEW])
            return
        if Batch.objects.filter(start_blocked(), pk=batch_id).exists():
            return
        batch_transition(batch_id=batch_id, to=S.COPYING, allowed_from=[S.NEW])


def dependents_settle(parent_id, advance: Callable[[str], None]) -> int:
    """Asks for the first step of each new batch waiting on this parent, once the parent ended
    or is being deleted: each starts, or is stopped as dependency_failed, or waits on another
    parent (its first step decides). Called by the step that ended or deletes the parent."""
    waiting = list(
        BatchDependency.objects.filter(parent_id=parent_id, batch__status=S.NEW).values_list(
            "batch_id", flat=True
        )
    )
    for batch_id in waiting:
        advance(str(batch_id))
    return len(waiting)


def batches_due() -> tuple[QuerySet[Batch], QuerySet[Batch]]:
    """New batches whose first step is due, as two queries, each served by an index, where
    their OR read every waiting batch: those not scheduled later (the batch_new_not_before
    index) and waiting on no parent; those with a requirement that can no longer be met (from
    the dependency rows). The sweep asks for those nobody moved (a lost message, a time that
    passed, a parent's end it missed), at most once per its wait; a batch still waiting is not
    among them."""
    free = Q(not_before__isnull=True) | Q(not_before__lte=DatabaseNow())
    # Read first: as a subquery, the planner scanned every batch to match the few ids it holds.
    # Only children still new: a cancelled child's dependency rows stay, and would pile up.
    unmet = list(
        BatchDependency.objects.filter(requirement_failed(), batch__status=S.NEW).values_list(
            "batch_id", flat=True
        )
    )
    return (
        Batch.objects.filter(free, status=S.NEW).exclude(waiting_on_parent()),
        Batch.objects.filter(pk__in=unmet, status=S.NEW),
    )


def batches_overdue() -> QuerySet[Batch]:
    """Batches past their deadline that can still be stopped (the batch_deadline index)."""
    return Batch.objects.filter(overdue(), deadline_at__isnull=False, status__in=CANCELLABLE)

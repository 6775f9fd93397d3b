"""The batch state machine: one table of transitions and the one function that moves a batch.

Nothing else writes `Batch.status`. `batch_transition` locks the row, re-checks that the move
is in the table, updates the status (and any fields that move with it) and records the
history row, all in one transaction, so a cancel racing with completion yields one outcome.
"""

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from batches.models import Batch, BatchStatus, BatchStatusChange
from notifications.outbox import outbox_record
from operating.metrics import transition_observed

S = BatchStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.NEW: frozenset({S.COPYING, S.CANCEL}),
    S.COPYING: frozenset({S.COPIED, S.HASH_MISMATCH, S.CANCEL}),
    S.HASH_MISMATCH: frozenset({S.DELETING}),
    S.COPIED: frozenset({S.VALIDATING, S.CANCEL}),
    S.VALIDATING: frozenset({S.PROCESSING, S.VALIDATION_FAILED, S.CANCEL}),
    S.VALIDATION_FAILED: frozenset({S.DELETING}),
    S.PROCESSING: frozenset({S.PROCESSED, S.CANCEL}),
    S.PROCESSED: frozenset({S.WRITING_RESULTS}),
    S.WRITING_RESULTS: frozenset({S.COMPLETED}),
    S.COMPLETED: frozenset({S.DELETING}),
    S.CANCEL: frozenset({S.CANCELLING}),
    S.CANCELLING: frozenset({S.CANCELLED}),
    S.CANCELLED: frozenset({S.DELETING}),
    S.DELETING: frozenset(),
}

TERMINAL = frozenset({S.HASH_MISMATCH, S.VALIDATION_FAILED, S.COMPLETED, S.CANCELLED})
CANCELLABLE = frozenset(status for status, targets in TRANSITIONS.items() if S.CANCEL in targets)
CANCEL_REQUESTED = frozenset({S.CANCEL, S.CANCELLING})
# Still moving on its own: a worker owes it a next step.
ACTIVE = frozenset(TRANSITIONS) - TERMINAL - {S.DELETING}


def can_move(source: str, target: str) -> bool:
    return target in TRANSITIONS.get(source, ())


def batch_transition(
    *,
    batch_id,
    to: str,
    allowed_from: Iterable[str] | None = None,
    owner: str = "",
    note: str = "",
    **changes,
) -> Batch | None:
    """Moves the batch to `to` if the table allows it from its current status (and, when
    given, the current status is one of `allowed_from`). Returns the updated batch, or None
    when the move does not apply; callers decide whether that is a conflict or nothing to do.

    A step that holds the batch's lease passes its `owner` token: the move then happens only
    while that lease is still its own (a step that lost its lease to a resumed one publishes
    nothing), and the lease is released with it."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or not can_move(batch.status, to):
            return None
        if allowed_from is not None and batch.status not in set(allowed_from):
            return None
        if owner:
            if batch.lease_owner != owner:
                return None
            changes.update(lease_owner="", lease_expires_at=None)
        source = batch.status
        now = timezone.now()
        transaction.on_commit(
            lambda entered=batch.updated_at: transition_observed(source=source, to=to, entered_at=entered)
        )
        Batch.objects.filter(pk=batch_id, status=source).update(
            status=to, updated_at=now, heartbeat_at=now, **changes
        )
        BatchStatusChange.objects.create(batch_id=batch_id, from_status=source, to_status=to, note=note)
        batch.refresh_from_db()
        outbox_record(batch=batch, source=source, target=to)
        return batch

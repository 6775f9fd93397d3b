"""The one function that moves a batch through the state machine of batches.statuses.

Nothing else writes `Batch.status`. `batch_transition` locks the row, re-checks that the move
is in the table, updates the status (and any fields that move with it) and records the
history row, all in one transaction, so a cancel racing with completion yields one outcome.
In that transaction it sends `batches.signals.batch_transitioned`: notifications' outbox row
commits or rolls back with the move, and operating observes the move once it commits.
The times it writes are the database's (batchsite.clock), taken once it holds the row lock: the
history of a batch is in order whichever worker's clock is off.
"""

from collections.abc import Iterable

from django.db import transaction

from batches.models import Batch, BatchStatusChange
from batches.signals import batch_transitioned
from batches.statuses import can_move
from batchsite.clock import DatabaseNow


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
        source, source_entered_at = batch.status, batch.updated_at
        Batch.objects.filter(pk=batch_id, status=source).update(
            status=to, updated_at=DatabaseNow(), heartbeat_at=DatabaseNow(), stalled_since=None, **changes
        )
        BatchStatusChange.objects.create(batch_id=batch_id, from_status=source, to_status=to, note=note)
        batch.refresh_from_db()
        batch_transitioned.send(
            sender=Batch, batch=batch, source=source, target=to, source_entered_at=source_entered_at
        )
        return batch

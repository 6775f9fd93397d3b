"""One owner per single-worker step (copy, validate, write results, finish a cancel, purge).

A step runs only while it holds the batch's lease: a token and an expiry on the batch row,
taken with a conditional update. The step renews it by time (`tick`, at most once a second)
while it works, and looks at the status at the same moment, so a cancel is noticed within a
second. A second delivery of the same step (a broker redelivering a message whose worker still
runs, a retry, a resume) finds the lease live and does nothing; once a lost worker's lease has
expired, the maintenance sweep resumes the step. The transition that ends the step is fenced
by the token (`batch_transition(owner=...)`), so a step that stalled past its lease publishes
nothing. The expiry is written and compared in the database's time (batchsite.clock): a worker
whose clock is ahead neither holds a dead worker's step for as long, nor does one behind take
a live worker's.
"""

import time
import uuid

from django.conf import settings
from django.db.models import Q

from batches.models import Batch
from batchsite.clock import DatabaseNow, database_now_plus

RENEW_EVERY_SECONDS = 1.0


class LeaseLost(Exception):
    """Another execution took the step over: this one stalled past its lease."""


class StepInterrupted(Exception):
    """The batch left the step's status (a cancel, a delete): the step stops, publishing nothing."""


class Lease:
    def __init__(self, *, batch_id, status: str):
        self.batch_id = batch_id
        self.status = status
        self.owner = uuid.uuid4().hex
        self.renewed_at = 0.0

    def _until(self):
        return database_now_plus(settings.BATCH_LEASE_SECONDS)

    def acquire(self) -> bool:
        taken = (
            Batch.objects.filter(pk=self.batch_id, status=self.status)
            .filter(Q(lease_owner="") | Q(lease_expires_at__lt=DatabaseNow()))
            .update(lease_owner=self.owner, lease_expires_at=self._until(), heartbeat_at=DatabaseNow())
        )
        self.renewed_at = time.monotonic()
        return taken == 1

    def tick(self) -> None:
        """Called often while the step works; renews the lease once a second."""
        if time.monotonic() - self.renewed_at < RENEW_EVERY_SECONDS:
            return
        self.renew()

    def renew(self) -> None:
        self.renewed_at = time.monotonic()
        renewed = Batch.objects.filter(pk=self.batch_id, lease_owner=self.owner, status=self.status).update(
            lease_expires_at=self._until(), heartbeat_at=DatabaseNow()
        )
        if renewed:
            return
        current = Batch.objects.filter(pk=self.batch_id).values_list("status", "lease_owner").first()
        if current is None or current[0] != self.status:
            raise StepInterrupted(f"batch {self.batch_id} left {self.status}")
        raise LeaseLost(f"batch {self.batch_id}: the {self.status} step's lease was taken over")

    def release(self) -> None:
        Batch.objects.filter(pk=self.batch_id, lease_owner=self.owner).update(
            lease_owner="", lease_expires_at=None
        )


class TickingReader:
    """A file-like reader that keeps a lease alive while storage reads through it."""

    closed = False

    def __init__(self, source, lease: Lease):
        self.source = source
        self.lease = lease

    def seekable(self) -> bool:
        return False

    def read(self, size=-1):
        self.lease.tick()
        return self.source.read(size)

"""One holder per chunk, for a while: the chunk's lease (a token and an expiry on the chunk row,
in the database's time), the model being the steps' (batches.pipeline.lease).

A claim is a short transaction of its own: it takes chunks that are not finished and whose lease
is free or expired (`SKIP LOCKED`, so claimers never wait on each other), records the lease and
commits. The chunk's work then runs in a transaction that holds no lock on the chunk until its
end, where the fence marks the chunk finished only if the lease is still this holder's; when it
is not (the holder froze or was cut off past its lease and another worker took the chunk over),
the fence raises and everything the chunk did rolls back. A chunk's effects, results and finished
mark still commit together, once. A chunk that runs long renews its lease on a connection of its
own (a renewal inside the work's transaction would show no one before it commits).

Stopping a batch (step_finish_cancel) waits for the live leases of its chunks, then takes every
lease back, so a stale holder that wakes later commits nothing after the partial results.
"""

import logging
import threading
import time
import uuid

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Q

from batches.models import Batch, Chunk
from batches.pipeline.sessions import role_set_local
from batchsite.clock import DatabaseNow, database_now_plus
from batchsite.faults import TRANSIENT_DATABASE_ERRORS

logger = logging.getLogger(__name__)
TAKE_BACK_POLL_SECONDS = 0.1
side = threading.local()


class ChunkLeaseLost(Exception):
    """Another worker took the chunk over: this holder stalled past its lease."""


def lease_side_connection():
    """A second connection of this process (and thread), in autocommit, for renewals."""
    if getattr(side, "connection", None) is None:
        side.connection = connections.create_connection(DEFAULT_DB_ALIAS)
    return side.connection


class ChunkLease:
    def __init__(self, *, chunk_ids: list[int], owner: str, unfinished: dict):
        self.chunk_ids = chunk_ids
        self.owner = owner
        # What "not finished yet" means for the work leased: {"done": False} to run the chunk,
        # {"validated": False} to check it.
        self.unfinished = unfinished
        self.renewed_at = time.monotonic()

    @classmethod
    def claim(
        cls, *, batch_id, status: str, unfinished: dict, count: int, worker: str
    ) -> "ChunkLease | None":
        """Up to `count` unfinished chunks of the batch, in index order, while it is in `status`;
        none that waits on another chunk (a mixed batch's)."""
        owner = uuid.uuid4().hex
        with transaction.atomic():
            role_set_local("chunk")
            free = Q(lease_owner="") | Q(lease_expires_at__lt=DatabaseNow())
            chunk_ids = list(
                Chunk.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(free, batch_id=batch_id, waits=0, **unfinished)
                .order_by("index")
                .values_list("pk", flat=True)[:count]
            )
            # The status is read once the chunks are locked: a stop committed before this read
            # is seen here, and one committed after it takes the lease back after this commits.
            # Past its deadline a batch runs no new chunk (its stop is the claimer's to make).
            in_time = Q(deadline_at__isnull=True) | Q(deadline_at__gt=DatabaseNow())
            if not chunk_ids or not Batch.objects.filter(in_time, pk=batch_id, status=status).exists():
                return None
            Chunk.objects.filter(pk__in=chunk_ids).update(
                lease_owner=owner,
                lease_expires_at=database_now_plus(settings.BATCH_CHUNK_LEASE_SECONDS),
                worker=worker,
            )
        return cls(chunk_ids=chunk_ids, owner=owner, unfinished=unfinished)

    def tick(self) -> None:
        """Called between line groups; renews once a third of the lease has passed."""
        if time.monotonic() - self.renewed_at >= settings.BATCH_CHUNK_LEASE_SECONDS / 3:
            self.renew()

    def renew(self) -> None:
        self.renewed_at = time.monotonic()
        if connection.vendor != "postgresql":
            # SQLite has one writer: while this chunk's transaction is open, no one else can
            # take the chunk, and a renewal from a second connection would wait for it.
            return
        unfinished = " AND ".join(f"NOT {field}" for field in self.unfinished)
        try:
            with lease_side_connection().cursor() as cursor:
                cursor.execute(
                    f"UPDATE {Chunk._meta.db_table}"
                    " SET lease_expires_at = statement_timestamp() + %s * interval '1 second'"
                    f" WHERE id = ANY(%s) AND lease_owner = %s AND {unfinished}",
                    [settings.BATCH_CHUNK_LEASE_SECONDS, self.chunk_ids, self.owner],
                )
                renewed = cursor.rowcount
        except TRANSIENT_DATABASE_ERRORS:
            side.connection.close()
            side.connection = None
            raise
        if renewed != len(self.chunk_ids):
            raise ChunkLeaseLost(f"chunks {self.chunk_ids}: the lease was taken over")

    def fence(self, chunk_id, **finished) -> None:
        """Inside the chunk's transaction: records the chunk finished (`finished`), only while
        the lease is this holder's; otherwise raises, so the whole transaction rolls back."""
        marked = Chunk.objects.filter(pk=chunk_id, lease_owner=self.owner, **self.unfinished).update(
            lease_owner="", lease_expires_at=None, **finished
        )
        if marked != 1:
            raise ChunkLeaseLost(f"chunk {chunk_id}: the lease was taken over")

    def release(self) -> None:
        """Frees the chunks this holder did not finish, for the next claim; after a database
        fault the lease simply expires."""
        try:
            Chunk.objects.filter(pk__in=self.chunk_ids, lease_owner=self.owner).update(
                lease_owner="", lease_expires_at=None
            )
        except TRANSIENT_DATABASE_ERRORS:
            logger.warning("chunks %s: could not release their lease; it expires", self.chunk_ids)


def chunk_leases_take_back(batch_id, *, tick) -> None:
    """For a batch that stopped: waits for its chunks' holders (a live lease: they notice the
    stop within BATCH_CANCEL_CHECK_LINES lines and commit what ran), then takes every unfinished
    chunk's lease back, so a holder that stalled commits nothing after this. A stalled holder's
    lease expires: the wait is at most BATCH_CHUNK_LEASE_SECONDS."""
    unfinished = Chunk.objects.filter(batch_id=batch_id, done=False)
    while unfinished.exclude(lease_owner="").filter(lease_expires_at__gte=DatabaseNow()).exists():
        tick()
        time.sleep(TAKE_BACK_POLL_SECONDS)
    # Every unfinished chunk, leased or not: the update waits for a claim in progress to
    # commit, then takes its lease back too.
    unfinished.update(lease_owner="", lease_expires_at=None)

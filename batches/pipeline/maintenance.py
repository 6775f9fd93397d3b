"""Keeping the pipeline moving and tidy: the sweep that resumes batches whose worker or message
was lost, the housekeeping that expires uploads, removes orphaned files and deletes batches past
retention, and the purge that removes a deleted batch.

Any worker may run a periodic job that is due: `claim_run` is a conditional update of the job's
row, so one process runs it per interval, whichever processes are alive (beat, or the timer
every worker starts).
"""

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from batches.files import (
    SPOOL_FOLDER,
    batch_folder,
    storage_discard,
    storage_files_under,
    storage_remove_folder,
)
from batches.models import Batch, BatchStatus, Chunk, MaintenanceRun, Upload
from batches.pipeline import scheduling
from batches.pipeline.lease import Lease
from batches.pipeline.sessions import role_set_local
from batches.selectors import batches_not_moving, batches_stalled, silent_for
from batches.signals import batch_stalled
from batches.statuses import TERMINAL
from batchsite.clock import DatabaseNow, database_now_plus

logger = logging.getLogger(__name__)
S = BatchStatus
LEASED = frozenset({S.COPYING, S.VALIDATING, S.WRITING_RESULTS, S.CANCELLING, S.DELETING})
# Statuses a worker leaves at once; one still there after a few seconds lost its message. (A
# new batch may wait for its time or its parents: scheduling.batches_due says which are due.)
PASSING = frozenset({S.COPIED, S.PROCESSED, S.CANCEL})
# Statuses in which chunk workers hold chunks.
CHUNKED = frozenset({S.VALIDATING, S.PROCESSING})
# Stalls recorded by one sweep at most; the rest are found by the next.
STALLS_PER_SWEEP = 100
# Batches past retention one housekeeping run asks to delete: a run takes seconds, not hours,
# however many expired at once (a pause in housekeeping, a busy account's day). A worker purges
# them in about 30 s (26 ms each, bench/README.md), within the minute to the next run.
RETENTION_DELETES_PER_RUN = 1000


def claim_run(name: str, *, every_seconds: float) -> bool:
    """True for the one caller that gets to run job `name` now."""
    due_before = database_now_plus(-every_seconds * 0.9)
    if MaintenanceRun.objects.filter(name=name, started_at__lt=due_before).update(started_at=DatabaseNow()):
        return True
    if MaintenanceRun.objects.filter(name=name).exists():
        return False
    try:
        MaintenanceRun.objects.create(name=name, started_at=DatabaseNow())
    except IntegrityError:
        return False
    return True


def finish_run(name: str) -> None:
    MaintenanceRun.objects.filter(name=name).update(finished_at=DatabaseNow())


def not_resumed_for(seconds: float) -> Q:
    """Batches the sweep has not asked for in the last `seconds` (by the database's clock)."""
    return Q(resumed_at__isnull=True) | Q(resumed_at__lt=database_now_plus(-seconds))


def batches_to_resume() -> set[str]:
    """Batches a worker owes a step but no worker is doing: a passing status not left for a few
    seconds (a new batch: once it may start), a single-worker step whose lease expired (or
    that no one took), processing with no chunk committed for BATCH_STUCK_AFTER_SECONDS, chunk
    work gone quiet with a chunk whose lease expired (its holder froze or was cut off), a
    finished batch whose deletion stalled.
    Each at most once per that wait, however long it stays there."""
    kick_seconds = settings.PIPELINE_KICK_AFTER_SECONDS
    kick_before = database_now_plus(-kick_seconds)
    quiet = silent_for(kick_seconds) & not_resumed_for(kick_seconds)
    lapsed = Chunk.objects.filter(batch_id=OuterRef("pk"), done=False, lease_expires_at__lt=DatabaseNow())
    stuck_seconds = settings.BATCH_STUCK_AFTER_SECONDS
    queries = (
        Batch.objects.filter(Exists(lapsed.exclude(lease_owner="")), status__in=CHUNKED).filter(quiet),
        Batch.objects.filter(status__in=PASSING).filter(quiet),
        *(due.filter(quiet) for due in scheduling.batches_due()),
        Batch.objects.filter(status__in=LEASED, lease_owner="").filter(quiet),
        Batch.objects.filter(status__in=LEASED, lease_expires_at__lt=DatabaseNow()),
        batches_stalled(after_seconds=stuck_seconds)
        .filter(status=S.PROCESSING)
        .filter(not_resumed_for(stuck_seconds)),
        Batch.objects.filter(status__in=TERMINAL, delete_requested_at__lt=kick_before),
    )
    return {str(pk) for query in queries for pk in query.values_list("pk", flat=True)}


def sweep(advance: Callable[[str], None]) -> int:
    """Records the batches that stalled, and resumes the batches no worker is moving, oldest
    first (the order their first step was asked for). Each resumed one is marked first, so a
    batch that is only waiting in a busy queue is asked for again no more than every few
    seconds; the mark is not its heartbeat, since asking is no progress. A batch whose row
    another process holds locked (a frozen holder, until the database ends its session) is
    skipped, not waited for: it is found again next time. Batches past their deadline are
    stopped first."""
    deadlines_enforce(advance)
    stalls_record()
    with transaction.atomic():
        role_set_local("sweep")
        batch_ids = [
            str(pk)
            for pk in Batch.objects.select_for_update(skip_locked=True)
            .filter(pk__in=batches_to_resume())
            .order_by("created_at", "uuid")
            .values_list("pk", flat=True)
        ]
        Batch.objects.filter(pk__in=batch_ids).update(resumed_at=DatabaseNow())
        for batch_id in batch_ids:
            advance(batch_id)
    if batch_ids:
        logger.info("sweep: resumed %d batches", len(batch_ids))
    for batch_id, status, updated_at in batches_not_moving().values_list("pk", "status", "updated_at")[:100]:
        logger.error(
            "batch %s has been %s since %s: it is not moving", batch_id, status, updated_at.isoformat()
        )
    return len(batch_ids)


def deadlines_enforce(advance: Callable[[str], None]) -> int:
    """Stops every batch past its deadline that has not ended, whatever its status (a chunk
    worker stops a processing one at its next claim or line group; this catches the rest: new,
    validating, paused, or one no worker is running)."""
    stopped = 0
    for batch_id in scheduling.batches_overdue().order_by("deadline_at").values_list("pk", flat=True)[:100]:
        if scheduling.deadline_stop(batch_id) is not None:
            advance(str(batch_id))
            stopped += 1
    if stopped:
        logger.info("sweep: stopped %d batches past their deadline", stopped)
    return stopped


def stalls_record() -> int:
    """Records each batch that has stalled (batches.selectors.batches_stalled) once: sets its
    `stalled_since` to its last progress and, in that transaction, sends batch_stalled (its
    webhook event). The update is conditional on `stalled_since` being unset, so two sweeps at
    once record a stall once. A batch that moved since by work that does not clear the mark
    itself (a step's lease renewal, a checked chunk) has it cleared, so its next stall counts.
    Locked rows are skipped, as the resume skips them."""
    with transaction.atomic():
        role_set_local("sweep")
        moved = list(
            Batch.objects.select_for_update(skip_locked=True)
            .filter(stalled_since__isnull=False, heartbeat_at__gt=F("stalled_since"))
            .values_list("pk", flat=True)
        )
        Batch.objects.filter(pk__in=moved, heartbeat_at__gt=F("stalled_since")).update(stalled_since=None)
        newly_stalled = list(
            batches_stalled()
            .select_for_update(skip_locked=True)
            .filter(stalled_since__isnull=True)
            .order_by("created_at", "uuid")
            .values_list("pk", flat=True)[:STALLS_PER_SWEEP]
        )
        recorded = 0
        for batch_id in newly_stalled:
            marked = (
                batches_stalled()
                .filter(pk=batch_id, stalled_since__isnull=True)
                .update(stalled_since=Coalesce("heartbeat_at", "created_at"))
            )
            if marked:
                batch_stalled.send(sender=Batch, batch=Batch.objects.get(pk=batch_id))
                recorded += 1
    if recorded:
        logger.warning("sweep: %d batches stalled", recorded)
    return recorded


def uploads_expire(*, keep_rows_days: int = 7) -> int:
    """Unused uploads past their validity (or invalidated) lose their bytes; their rows stay
    a while so a late create_batch is told "expired" rather than "unknown"."""
    unused = Upload.objects.filter(used_at__isnull=True)
    lapsed = unused.filter(Q(expires_at__lt=DatabaseNow()) | Q(invalidated_at__isnull=False)).exclude(
        file_name=""
    )
    count = 0
    for upload in lapsed.only("pk", "file_name"):
        storage_discard(upload.file_name)
        Upload.objects.filter(pk=upload.pk).update(file_name="")
        count += 1
    unused.filter(expires_at__lt=database_now_plus(-keep_rows_days * 86400)).delete()
    return count


def files_remove_stale(folder: str, *, referenced: set[str], older_than) -> int:
    """Deletes the files below `folder` that no row names and that are older than `older_than`."""
    removed = 0
    for name in storage_files_under(folder):
        if name in referenced:
            continue
        try:
            modified = default_storage.get_modified_time(name)
        except (FileNotFoundError, NotImplementedError):
            continue
        if modified < older_than:
            storage_discard(name)
            removed += 1
    return removed


def uploads_remove_orphans() -> int:
    """Files under uploads/ that no upload row names (a PUT whose process died half-way, a file
    a crash left behind) are deleted once older than any upload URL can be."""
    return files_remove_stale(
        "uploads",
        referenced=set(Upload.objects.exclude(file_name="").values_list("file_name", flat=True)),
        older_than=timezone.now() - timedelta(seconds=settings.UPLOAD_URL_VALIDITY_SECONDS + 3600),
    )


def spool_remove_stale() -> int:
    """Results being written spool in SPOOL_FOLDER and are renamed into place; a worker killed
    while writing leaves its spool behind. Nothing writes one for an hour."""
    return files_remove_stale(SPOOL_FOLDER, referenced=set(), older_than=timezone.now() - timedelta(hours=1))


def batch_files_remove_orphans() -> int:
    """Files in a batch's folder that the batch does not record are deleted once older than
    ORPHAN_FILE_GRACE_SECONDS: a step whose publishing transition failed (a database error)
    or whose process died before it discarded its file leaves one, kept until the batch is
    deleted otherwise. A step writing its file now is younger than the grace. The folders are
    listed once per grace period, not at every housekeeping run."""
    grace = settings.ORPHAN_FILE_GRACE_SECONDS
    if not claim_run("batch-files", every_seconds=grace):
        return 0
    older_than = timezone.now() - timedelta(seconds=grace)
    removed = 0
    for account_id in storage_folders("batches"):
        batch_ids = [name for name in storage_folders(f"batches/{account_id}") if is_uuid(name)]
        recorded = {
            str(pk): set(names)
            for pk, *names in Batch.objects.filter(pk__in=batch_ids).values_list(
                "pk", "input_file", "prepared_file", "results_file", "errors_file"
            )
        }
        for batch_id in batch_ids:
            removed += files_remove_stale(
                batch_folder(account_id=account_id, batch_id=batch_id),
                referenced=recorded.get(batch_id, set()),
                older_than=older_than,
            )
    finish_run("batch-files")
    return removed


def storage_folders(folder: str) -> list[str]:
    try:
        return default_storage.listdir(folder)[0]
    except FileNotFoundError:
        return []


def is_uuid(name: str) -> bool:
    try:
        uuid.UUID(name)
    except ValueError:
        return False
    return True


def batches_past_retention(advance: Callable[[str], None]) -> int:
    """Finished batches whose results passed their retention are deleted like a DELETE would,
    the longest expired first and at most RETENTION_DELETES_PER_RUN per run: the rest wait
    for the next run."""
    expired = Batch.objects.filter(
        status__in=TERMINAL, results_expire_at__lt=DatabaseNow(), delete_requested_at__isnull=True
    ).order_by("results_expire_at")
    batch_ids = [str(pk) for pk in expired.values_list("pk", flat=True)[:RETENTION_DELETES_PER_RUN]]
    Batch.objects.filter(pk__in=batch_ids).update(delete_requested_at=DatabaseNow())
    for batch_id in batch_ids:
        advance(batch_id)
    return len(batch_ids)


def step_purge(batch: Batch, lease: Lease) -> None:
    """Removes the batch's files and folder, then the batch itself (history and chunks go with it)."""
    storage_remove_folder(batch_folder(account_id=batch.account_id, batch_id=batch.pk))
    for name in (batch.input_file, batch.prepared_file, batch.results_file, batch.errors_file):
        storage_discard(name)
    if batch.upload is not None:
        storage_discard(batch.upload.file_name)
        Upload.objects.filter(pk=batch.upload.pk).delete()
    Batch.objects.filter(pk=batch.pk, status=S.DELETING, lease_owner=lease.owner).delete()
    return None

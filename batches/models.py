import uuid

from django.db import models

from batchsite.clock import DatabaseNow
from permissions.models import Account, AccountUser


class Upload(models.Model):
    """An upload URL (Trusted Twin's "cache" handler) and the file PUT to it."""

    handler = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="uploads")
    created_by = models.ForeignKey(AccountUser, on_delete=models.SET_NULL, null=True, blank=True)
    expires_at = models.DateTimeField()
    invalidated_at = models.DateTimeField(null=True, blank=True)
    # Set when bytes were stored: the storage name, their size and the declared type.
    file_name = models.CharField(max_length=300, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=200, blank=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)
    # Set when a batch takes the handler; the handler then cannot be used again.
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self):
        return str(self.handler)


class BatchStatus(models.TextChoices):
    NEW = "new"
    COPYING = "copying"
    HASH_MISMATCH = "hash_mismatch"
    COPIED = "copied"
    VALIDATING = "validating"
    VALIDATION_FAILED = "validation_failed"
    PROCESSING = "processing"
    PAUSED = "paused"
    PROCESSED = "processed"
    WRITING_RESULTS = "writing_results"
    COMPLETED = "completed"
    CANCEL = "cancel"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    DELETING = "deleting"


# The statuses a cancel (so a deadline) can still stop: statuses.CANCELLABLE, which is derived
# from the transitions and cannot be imported here (that module reads this one). The condition
# of the batch_deadline_open index: a new transition to cancel belongs here too.
CANCELLABLE_STATUSES = sorted(
    [
        BatchStatus.NEW,
        BatchStatus.COPYING,
        BatchStatus.COPIED,
        BatchStatus.VALIDATING,
        BatchStatus.PROCESSING,
        BatchStatus.PAUSED,
    ]
)


class Batch(models.Model):
    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="batches")
    # Lines run with this user's permissions at execution time; without a user they get 403.
    created_by = models.ForeignKey(AccountUser, on_delete=models.SET_NULL, null=True, blank=True)
    operation = models.CharField(max_length=64)
    status = models.CharField(max_length=32, choices=BatchStatus.choices, default=BatchStatus.NEW)
    # The hash the client gave (echoed only when given) and the one computed while copying.
    hash = models.CharField(max_length=64, blank=True)
    computed_hash = models.CharField(max_length=64, blank=True)
    batch_dict = models.JSONField(null=True, blank=True)
    # Batch controls (docs/contract.md, section 11): when to stop for failed lines, normalised by
    # services.error_budget_clean; and a dry run that stops after validation.
    error_budget = models.JSONField(null=True, blank=True)
    validate_only = models.BooleanField(default=False)
    # Correlation (docs/contract.md, section 15): the key or column holding each line's own id
    # ("" for none), taken out before the operation sees the line and echoed as "id"; and
    # the fields copied from each line into its result line as "input".
    id_field = models.CharField(max_length=128, blank=True)
    echo_fields = models.JSONField(default=list, blank=True)
    # Time and order (docs/contract.md, section 14): the batch stays new until `not_before` and
    # until every row of its `requirements` is met; it is stopped at `deadline_at`
    # (deadline_exceeded); among one account's batches a higher `priority` runs first.
    not_before = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(default=5)
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )
    upload = models.OneToOneField(
        Upload, on_delete=models.SET_NULL, null=True, blank=True, related_name="batch"
    )
    # DELETE on an active batch cancels it first; once cancelled, it goes on to deleting.
    delete_requested_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    idempotency_digest = models.CharField(max_length=64, blank=True)

    # Files in storage: the batch's own copy of the input, and what the pipeline writes. Each
    # is written under a fresh name and published by recording it here in the transition that
    # completes its step, so no file is ever rewritten while another process may read it.
    input_file = models.CharField(max_length=300, blank=True)
    prepared_file = models.CharField(max_length=300, blank=True)
    results_file = models.CharField(max_length=300, blank=True)
    errors_file = models.CharField(max_length=300, blank=True)
    # Why the batch stopped, for validation_failed, hash_mismatch and an exceeded error budget.
    failure_reason = models.TextField(blank=True)

    total = models.BigIntegerField(null=True, blank=True)
    processed = models.BigIntegerField(default=0)
    succeeded = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)

    # The database's time, as every time the pipeline compares across processes (batchsite.clock).
    created_at = models.DateTimeField(db_default=DatabaseNow())
    updated_at = models.DateTimeField(db_default=DatabaseNow())
    # Moved by whichever worker is busy with the batch; a batch in a non-terminal status
    # whose heartbeat stops is resumed by the periodic maintenance task.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The one execution that owns the batch's current single-worker step (copy, validate,
    # write results, finish a cancel, purge) and until when; renewed while it works. Another
    # delivery of the same step does nothing while the lease is live.
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    results_expire_at = models.DateTimeField(null=True, blank=True)
    # The totals of a terminal batch (docs/contract.md, accounting), written with its results
    # files: line counts, failures by subcode, and the files' lines, bytes and SHA-256.
    summary = models.JSONField(null=True, blank=True)
    # Set by the sweep when an active batch that should move has not for
    # BATCH_STALL_AFTER_SECONDS (one batch_stalled event then); cleared when it moves again.
    stalled_since = models.DateTimeField(null=True, blank=True)
    # When the sweep last asked for the batch's next step (it asks again no sooner than
    # PIPELINE_KICK_AFTER_SECONDS after). Kept apart from the heartbeat: asking is no progress,
    # and must not hide a stall.
    resumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "batches"
        ordering = ["-created_at", "-uuid"]
        indexes = [
            models.Index(fields=["account", "-created_at", "-uuid"], name="batch_account_created"),
            models.Index(fields=["account", "status", "-created_at", "-uuid"], name="batch_account_status"),
            models.Index(fields=["status", "updated_at"], name="batch_status_updated"),
            models.Index(
                fields=["status", "not_before"], condition=models.Q(status="new"), name="batch_new_not_before"
            ),
            # Only batches a deadline can still stop (statuses.CANCELLABLE): the deadlines of
            # finished ones stay on their rows, and every claim and sweep would read them.
            models.Index(
                fields=["deadline_at"],
                condition=models.Q(deadline_at__isnull=False, status__in=CANCELLABLE_STATUSES),
                name="batch_deadline_open",
            ),
            # A finished batch whose deletion was asked for, until it is gone (the sweep's lookup).
            models.Index(
                fields=["delete_requested_at"],
                condition=models.Q(delete_requested_at__isnull=False),
                name="batch_delete_requested",
            ),
            # Retention, longest expired first (maintenance.batches_past_retention).
            models.Index(
                fields=["results_expire_at"],
                condition=models.Q(results_expire_at__isnull=False, delete_requested_at__isnull=True),
                name="batch_results_expire",
            ),
            models.Index(
                fields=["stalled_since"],
                condition=models.Q(stalled_since__isnull=False),
                name="batch_stalled",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="batch_idempotency_key_unique",
            ),
            # A batch has at most one retry (retry it again by retrying the retry): parallel
            # retry requests cannot each run the same lines.
            models.UniqueConstraint(fields=["retry_of"], name="batch_one_retry"),
            models.CheckConstraint(
                condition=models.Q(processed=models.F("succeeded") + models.F("failed")),
                name="batch_progress_adds_up",
            ),
        ]

    def __str__(self):
        return f"{self.operation} {self.uuid} ({self.status})"


class BatchStatusChange(models.Model):
    """One row per transition: the status history shown in admin and on the detail page."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="history")
    from_status = models.CharField(max_length=32, blank=True)
    to_status = models.CharField(max_length=32)
    at = models.DateTimeField(db_default=DatabaseNow())
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self):
        return f"{self.from_status or '∅'} → {self.to_status}"


class Chunk(models.Model):
    """A range of lines of a batch: the unit of parallel work and of recovery. Its effects,
    its per-line results and `done` commit in one transaction.

    A large JSON Lines file is validated a chunk at a time too: the chunks are cut from the
    input by line breaks while the batch is `validating` (`validated` false, the offsets and
    line numbers those of the input), and each is checked by any chunk worker, which records
    its valid lines normalised (`prepared`) or its invalid ones' errors (`results`). Other
    files are validated in one pass and cut from the batch's prepared file, validated."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="chunks")
    index = models.IntegerField()
    first_line = models.BigIntegerField()
    last_line = models.BigIntegerField()
    # Where the chunk's lines start and end in the batch's prepared (normalised) input, or in
    # the input itself for a chunk validated on its own.
    start_offset = models.BigIntegerField()
    end_offset = models.BigIntegerField()
    line_count = models.IntegerField()
    validated = models.BooleanField(default=True)
    # Of a chunk validated on its own: its valid lines, `<line>\t<json>` each, read instead
    # of the batch's prepared file; how many lines are invalid; why the input could not be
    # read past some line of the chunk.
    prepared = models.TextField(blank=True)
    invalid = models.IntegerField(default=0)
    unreadable = models.TextField(blank=True)
    done = models.BooleanField(default=False)
    # Set when the chunk stopped at a cancel: lines past it are reported as not executed.
    executed_count = models.IntegerField(default=0)
    succeeded = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    # The chunk's result lines, JSON Lines in line order, merged into the results file; while
    # validating, its invalid lines' (merged into the validation report).
    results = models.TextField(blank=True)
    # Its failed lines by subcode, {subcode: {"count", "lines": [first 5]}}, counted as its
    # results are made: a running batch's summary adds these up. While validating, its invalid
    # lines' and its valid ones as not_executed (the summary, should the batch fail validation).
    subcodes = models.JSONField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    # The Celery node (`name@host`) that holds or ran the chunk: shows how work spread over
    # workers, and who holds a chunk that is not moving.
    worker = models.CharField(max_length=200, blank=True)
    # Who runs (or checks) the chunk and until when, in the database's time: a claim takes a
    # chunk whose lease is free or expired, the holder renews it while it works, and its commit
    # is fenced by the token, so a frozen or cut-off holder's chunk is taken over and the
    # stale holder commits nothing (batches.pipeline.chunk_lease).
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Of a mixed batch (docs/contract.md, section 16): how many chunks holding lines this one's
    # lines refer to are not done yet (claimable at 0), and the indexes of the chunks whose
    # lines refer to this one's (each counts one down when this one commits).
    waits = models.IntegerField(default=0)
    unblocks = models.JSONField(null=True, blank=True)
    # Of a mixed batch's chunk checked on its own, for the merge that cuts the chunks to run:
    # {"lines": [[line, [lines of this chunk it refers to], [names defined before the chunk]],
    # ...] (its lines with references), "repeated": names another chunk had recorded first}.
    references = models.JSONField(null=True, blank=True)

    class Meta:
        # No default ordering: ordering by "batch" joins the batch table, and a FOR UPDATE
        # over that join locks the batch row too (a deadlock with a chunk worker).
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="chunk_batch_index_unique")]
        indexes = [models.Index(fields=["batch", "done"], name="chunk_batch_done")]

    def __str__(self):
        return f"chunk {self.index} of {self.batch_id}"


class DependencyRequirement(models.TextChoices):
    COMPLETED = "completed"
    NO_FAILURES = "no_failures"
    TERMINAL = "terminal"


class BatchDependency(models.Model):
    """One of a batch's `after` requirements: `parent` (same account) must reach `require`
    before the batch starts. `parent` is null once the parent was deleted; `parent_uuid` still
    names it."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="requirements")
    parent = models.ForeignKey(Batch, on_delete=models.SET_NULL, null=True, related_name="dependents")
    parent_uuid = models.UUIDField()
    require = models.CharField(max_length=16, choices=DependencyRequirement.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "parent_uuid"], name="dependency_one_per_parent")
        ]

    def __str__(self):
        return f"{self.batch_id} after {self.parent_uuid} ({self.require})"


class LineId(models.Model):
    """A line's id, recorded while a batch with an `id_field` is validated, so that a repeated id
    is found by the database at any size, with no id held in a worker's memory. `key` is the
    id as JSON (so the string "7" and the integer 7 are different ids). Unique by line, so a
    chunk checked twice records its ids once; deleted with the batch's chunks when validation
    ends."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="+")
    line = models.BigIntegerField()
    key = models.CharField(max_length=300)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "line"], name="line_id_one_per_line")]
        indexes = [models.Index(fields=["batch", "key", "line"], name="line_id_batch_key")]

    def __str__(self):
        return f"{self.batch_id} line {self.line}: {self.key}"


class LineRef(models.Model):
    """A line of a mixed batch named by its `ref`, recorded while the batch is validated (so a
    reference is resolved, and a repeated name found, by the database at any size), and its
    outcome once its chunk committed: `status`, and the result body as JSON text for a 2xx.
    Later lines' references read it; so does a retry, for lines it does not run again."""

    # No index of its own: the unique (batch, name) index serves lookups by batch, and every
    # index costs each of a million names its insert and its outcome's update.
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=64)
    line = models.BigIntegerField()
    status = models.IntegerField(null=True, blank=True)
    body = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "name"], name="line_ref_one_per_name")]

    def __str__(self):
        return f"{self.batch_id} line {self.line}: {self.name}"


class MaintenanceRun(models.Model):
    """When a periodic job last ran. Any worker may run a job that is due; claiming it is a
    conditional update of this row, so one runs per interval whichever process is alive."""

    name = models.CharField(max_length=64, primary_key=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return self.name

"""Writes for uploads and batches. Status changes go through `batches.states.batch_transition`."""

import errno
import hashlib
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, OperationalError, transaction
from django.http import Http404
from django.utils import timezone

from batches.controls import error_budget_clean
from batches.files import upload_file_name
from batches.models import Batch, BatchDependency, BatchStatus, BatchStatusChange, Upload
from batches.pipeline.mixed import MIXED, MIXED_KEYS, may_batch
from batches.pipeline.sessions import is_lock_timeout, role_set_local
from batches.states import batch_transition
from batches.statuses import CANCEL_REQUESTED, CANCELLABLE, TERMINAL
from batches.storage import bucket_object, uploads_go_direct
from batches.tasks import CELERY_ENQUEUE
from batches.validators import (
    PRIORITY_DEFAULT,
    after_clean,
    batch_dict_validate,
    complete_within_clean,
    echo_fields_clean,
    encoded_json,
    hash_validator,
    id_field_clean,
    priority_clean,
)
from batchsite.clock import DatabaseNow, database_now_plus
from batchsite.errors import ApplicationError, Conflict
from batchsite.timestamps import to_ts
from operating import services as usage
from permissions.models import Account, AccountUser
from twins.registry import operation_get

IDEMPOTENCY_WINDOW = timedelta(hours=24)
IDEMPOTENCY_KEY_MAX_LENGTH = Batch._meta.get_field("idempotency_key").max_length
UPLOAD_BLOCK_BYTES = 64 * 1024


def _enqueue_advance(batch_id) -> None:
    CELERY_ENQUEUE.advance(str(batch_id))


# Uploads


def upload_create(*, account: Account, created_by: AccountUser | None) -> Upload:
    expires_at = timezone.now() + timedelta(seconds=settings.UPLOAD_URL_VALIDITY_SECONDS)
    upload = Upload(account=account, created_by=created_by, expires_at=expires_at)
    if uploads_go_direct():
        # The client PUTs straight to this object; naming it now lets invalidation and
        # expiry delete it like any stored upload, whether or not bytes ever arrived.
        upload.file_name = upload_file_name(account_id=account.pk, handler=upload.handler)
    upload.save(force_insert=True)
    return upload


def upload_discover(upload: Upload) -> None:
    """With direct uploads the bytes reach the bucket without this server: records them if
    they are there. The caller holds the upload's row lock."""
    found = bucket_object(upload.file_name)
    if found is None:
        return
    if found.size > settings.BATCH_FILE_MAX_BYTES:
        raise ApplicationError(
            f"The file is {found.size} bytes; the limit is {settings.BATCH_FILE_MAX_BYTES}.",
            subcode="file_too_large",
            status_code=413,
        )
    usage.quota_check_upload(account_id=upload.account_id, size=found.size)
    usage.usage_record_upload(account_id=upload.account_id, user_id=upload.created_by_id, size=found.size)
    upload.size = found.size
    upload.content_type = found.content_type[:200]
    upload.uploaded_at = found.modified_at
    upload.save(update_fields=["size", "content_type", "uploaded_at"])


def _refuse_unwritable(upload: Upload) -> None:
    if upload.invalidated_at is not None:
        raise ApplicationError(
            "This upload URL was invalidated.", subcode="upload_url_invalidated", status_code=403
        )
    if upload.used_at is not None:
        raise Conflict("A batch already took this upload; it cannot change.", subcode="upload_used")
    if upload.expires_at <= timezone.now():
        raise ApplicationError("This upload URL has expired.", subcode="upload_url_expired", status_code=403)


class _CountingReader:
    """The request body, read a block at a time and counted, so a short body is noticed."""

    # Storage backends ask before rewinding (S3's does); a request body cannot be rewound.
    closed = False

    def __init__(self, stream: BinaryIO | None):
        self.stream = stream
        self.count = 0

    def seekable(self) -> bool:
        return False

    def read(self, size: int = UPLOAD_BLOCK_BYTES) -> bytes:
        if self.stream is None:
            return b""
        # As much as asked: S3's uploader takes a short read for the end of the body.
        block = self.stream.read(size if size and size > 0 else UPLOAD_BLOCK_BYTES)
        self.count += len(block)
        return block


def upload_store(
    *, handler: uuid.UUID, stream: BinaryIO | None, content_length: int | None, content_type: str
) -> Upload:
    """Streams a PUT body into storage as the upload's file, replacing an earlier one.

    The bytes go to a fresh name and replace the previous file only once complete, so a
    refused or broken upload leaves nothing behind and the previous file stays intact."""
    upload = Upload.objects.filter(handler=handler).first()
    if upload is None:
        raise ApplicationError("No such upload URL.", subcode="not_found", status_code=404)
    _refuse_unwritable(upload)
    if content_length is None:
        raise ApplicationError(
            "The upload needs a Content-Length header.", subcode="length_required", status_code=411
        )
    if content_length > settings.BATCH_FILE_MAX_BYTES:
        raise ApplicationError(
            f"The file is {content_length} bytes; the limit is {settings.BATCH_FILE_MAX_BYTES}.",
            subcode="file_too_large",
            status_code=413,
        )
    usage.quota_check_upload(account_id=upload.account_id, size=content_length)

    name = f"{upload_file_name(account_id=upload.account_id, handler=upload.handler)}.{uuid.uuid4().hex}"
    reader = _CountingReader(stream)
    try:
        name = _storage_save_or_507(name, File(reader, name=name))
        if reader.count != content_length:
            raise ApplicationError(
                f"The body ended after {reader.count} of {content_length} bytes.",
                subcode="incomplete_upload",
            )
        with transaction.atomic():
            upload = Upload.objects.select_for_update().get(handler=handler)
            # A batch may have taken the handler, or a client invalidated it, meanwhile.
            _refuse_unwritable(upload)
            previous = upload.file_name
            upload.file_name = name
            upload.size = content_length
            upload.content_type = content_type[:200]
            upload.uploaded_at = timezone.now()
            upload.save(update_fields=["file_name", "size", "content_type", "uploaded_at"])
            usage.usage_record_upload(
                account_id=upload.account_id, user_id=upload.created_by_id, size=content_length
            )
            if previous:
                transaction.on_commit(lambda: default_storage.delete(previous))
    except BaseException:
        default_storage.delete(name)
        raise
    return upload


def _storage_save_or_507(name: str, content: File) -> str:
    try:
        return default_storage.save(name, content)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ApplicationError(
                "The service's file storage is full; nothing was kept. Try again later.",
                subcode="insufficient_storage",
                status_code=507,
            ) from None
        raise


def upload_invalidate(*, upload: Upload) -> Upload:
    """The URL stops working; its file goes too unless a batch holds it."""
    with transaction.atomic():
        upload = Upload.objects.select_for_update().get(pk=upload.pk)
        if upload.invalidated_at is None:
            upload.invalidated_at = timezone.now()
            update_fields = ["invalidated_at"]
            if upload.used_at is None and upload.file_name:
                unused = upload.file_name
                upload.file_name = ""
                update_fields.append("file_name")
                transaction.on_commit(lambda: default_storage.delete(unused))
            upload.save(update_fields=update_fields)
    return upload


# Batches


def _idempotency_digest(
    *,
    handler: str,
    operation: str,
    hash: str,
    batch_dict,
    error_budget=None,
    validate_only=False,
    retry_of=None,
    id_field="",
    echo_fields=(),
    schedule=None,
) -> str:
    if retry_of is not None:
        # A retry's body is the batch it retries (it has no upload).
        body = {"retry_of": str(retry_of.pk)}
    else:
        body = {"handler": handler, "operation": operation, "hash": hash, "batch_dict": batch_dict}
    # Only when given, so a body without them digests as it did before they existed.
    if error_budget is not None:
        body["error_budget"] = error_budget
    if validate_only:
        body["validate_only"] = True
    if id_field:
        body["id_field"] = id_field
    if echo_fields:
        body["echo_fields"] = list(echo_fields)
    body.update(schedule or {})
    return hashlib.sha256(encoded_json(body)).hexdigest()


def idempotency_key_check(key: str) -> None:
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ApplicationError(
            f"The Idempotency-Key is longer than {IDEMPOTENCY_KEY_MAX_LENGTH} characters.",
            subcode="invalid_idempotency_key",
        )


def retry_replay(*, batch: Batch, idempotency_key: str, schedule: dict | None = None) -> Batch | None:
    """The retry an earlier request with this key made of `batch` (with this `schedule`: the
    time-and-order keywords batch_create takes), if within the window; 409 when the key was
    used for something else."""
    given = {"not_before": None, "deadline_at": None, "complete_within": None, "priority": PRIORITY_DEFAULT}
    digested = _schedule_digested(**_schedule_clean(**{**given, **(schedule or {})}, after=None))
    digest = _idempotency_digest(
        handler="", operation="", hash="", batch_dict=None, retry_of=batch, schedule=digested
    )
    with transaction.atomic():
        return _idempotent_replay(account=batch.account, key=idempotency_key, digest=digest)


def _idempotent_replay(*, account: Account, key: str, digest: str) -> Batch | None:
    """The batch an earlier request with this key created, if it is within the window.

    A key older than the window is released (blanked on its batch) so it can be used again."""
    earlier = Batch.objects.select_for_update().filter(account=account, idempotency_key=key).first()
    if earlier is None:
        return None
    if earlier.created_at < timezone.now() - IDEMPOTENCY_WINDOW:
        Batch.objects.filter(pk=earlier.pk).update(idempotency_key="", idempotency_digest="")
        return None
    if earlier.idempotency_digest != digest:
        raise Conflict(
            "This Idempotency-Key was used within 24 hours with a different body.",
            subcode="idempotency_key_reused",
        )
    return earlier


def _usable_upload(*, account: Account, handler: str) -> Upload:
    try:
        handler_id = uuid.UUID(handler)
    except ValueError:
        handler_id = None
    upload = Upload.objects.select_for_update().filter(handler=handler_id).first() if handler_id else None
    if upload is None or upload.account_id != account.pk:
        # Another account's handler is unknown here too, so an answer never tells it exists.
        raise ApplicationError("No upload URL has this handler.", subcode="handler_unknown", status_code=404)
    if upload.used_at is not None:
        raise ApplicationError("Another batch already took this handler.", subcode="handler_used")
    if upload.invalidated_at is not None:
        raise ApplicationError("This handler was invalidated.", subcode="handler_invalidated")
    if upload.expires_at <= timezone.now():
        raise ApplicationError("This handler has expired.", subcode="handler_expired")
    if upload.uploaded_at is None and uploads_go_direct():
        upload_discover(upload)
    if upload.uploaded_at is None:
        raise ApplicationError("No file was uploaded to this handler.", subcode="handler_not_uploaded")
    return upload


def _batch_request_check(
    *, account: Account, user, operation: str, hash: str, batch_dict: dict | None, idempotency_key: str
) -> None:
    """Refuses a batch of an unknown or unbatchable operation, one the user's role does not
    allow (a mixed batch's operations are checked line by line when it is validated), or
    one with a malformed idempotency key, hash or batch_dict."""
    found = operation_get(operation)
    if found is None and operation != MIXED:
        raise ApplicationError(f"There is no operation {operation!r}.", subcode="operation_unknown")
    if found is not None and not found.batchable:
        raise ApplicationError(
            f"The operation {operation!r} cannot run in a batch.", subcode="operation_not_batchable"
        )
    if not may_batch(user, operation, account):
        raise PermissionDenied(f"The role does not allow {operation}.")
    idempotency_key_check(idempotency_key)
    if hash:
        hash_validator(hash)
    if batch_dict is not None:
        batch_dict_validate(batch_dict)


def batch_create(
    *,
    account: Account,
    user,
    handler: str,
    operation: str,
    hash: str = "",
    batch_dict: dict | None = None,
    error_budget: dict | None = None,
    validate_only: bool = False,
    idempotency_key: str = "",
    retry_of: Batch | None = None,
    id_field: str = "",
    echo_fields: list[str] | None = None,
    not_before: datetime | None = None,
    deadline_at: datetime | None = None,
    complete_within: float | None = None,
    priority: int = PRIORITY_DEFAULT,
    after: list[dict] | None = None,
) -> tuple[Batch, bool]:
    """Creates a batch over an uploaded file and enqueues its pipeline. Returns the batch and
    whether it is new: with an `idempotency_key` seen within 24 hours and the same body, the
    earlier batch comes back instead. A retry names the batch it retries (`retry_of`) and no
    upload: its first step builds its input from that batch's files. A batch has at most one
    retry, so a second raises IntegrityError (see `batches.retry`).

    Time and order (section 14): `deadline_at` or `complete_within` (seconds from the database's
    now), never both; `after` as batches.validators.after_clean takes it, each parent a batch of
    the account (404 otherwise, as GET /batches/{batch} answers)."""
    _batch_request_check(
        account=account,
        user=user,
        operation=operation,
        hash=hash,
        batch_dict=batch_dict,
        idempotency_key=idempotency_key,
    )
    error_budget = error_budget_clean(error_budget)
    validate_only = bool(validate_only)
    id_field = id_field_clean(id_field)
    if operation == MIXED and id_field in MIXED_KEYS:
        raise ValidationError(
            f"id_field {id_field!r} is a mixed line's own key; name another field.", code="invalid_id_field"
        )
    echo_fields = echo_fields_clean(echo_fields)
    schedule = _schedule_clean(
        not_before=not_before,
        deadline_at=deadline_at,
        complete_within=complete_within,
        priority=priority,
        after=after,
    )

    digest = _idempotency_digest(
        handler=handler,
        operation=operation,
        hash=hash,
        batch_dict=batch_dict,
        error_budget=error_budget,
        validate_only=validate_only,
        retry_of=retry_of,
        id_field=id_field,
        echo_fields=echo_fields,
        schedule=_schedule_digested(**schedule),
    )
    try:
        with transaction.atomic():
            if idempotency_key:
                earlier = _idempotent_replay(account=account, key=idempotency_key, digest=digest)
                if earlier is not None:
                    return earlier, False
            # Before the upload is taken, so that a client's check with an unknown handler
            # (batches.cli) meets these refusals first.
            parents = _schedule_check(
                account=account, deadline_at=schedule["deadline_at"], after=schedule["after"]
            )
            upload = None if retry_of is not None else _usable_upload(account=account, handler=handler)
            usage.usage_admit_batch(
                account_id=account.pk, user_id=getattr(getattr(user, "account_user", None), "pk", None)
            )
            if upload is not None:
                Upload.objects.filter(pk=upload.pk).update(used_at=timezone.now())
            batch = Batch.objects.create(
                account=account,
                created_by=getattr(user, "account_user", None),
                operation=operation,
                hash=hash,
                batch_dict=batch_dict,
                error_budget=error_budget,
                validate_only=validate_only,
                id_field=id_field,
                echo_fields=echo_fields,
                upload=upload,
                idempotency_key=idempotency_key,
                idempotency_digest=digest if idempotency_key else "",
                retry_of=retry_of,
                not_before=schedule["not_before"],
                deadline_at=(
                    database_now_plus(schedule["complete_within"])
                    if schedule["complete_within"]
                    else schedule["deadline_at"]
                ),
                priority=schedule["priority"],
            )
            if schedule["complete_within"]:
                batch.refresh_from_db(fields=["deadline_at"])
            BatchDependency.objects.bulk_create(
                BatchDependency(batch=batch, parent=parent, parent_uuid=parent.uuid, require=require)
                for parent, require in parents
            )
            BatchStatusChange.objects.create(batch=batch, from_status="", to_status=BatchStatus.NEW)
            _enqueue_advance(batch.pk)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race: answer with its batch.
        if not idempotency_key:
            raise
        with transaction.atomic():
            earlier = _idempotent_replay(account=account, key=idempotency_key, digest=digest)
        if earlier is None:
            raise
        return earlier, False
    return batch, True


def _schedule_clean(*, not_before, deadline_at, complete_within, priority, after) -> dict:
    complete_within = complete_within_clean(complete_within)
    if deadline_at is not None and complete_within is not None:
        raise ValidationError("Give deadline_ts or complete_within, not both.", code="invalid_deadline")
    if not_before is not None and deadline_at is not None and deadline_at <= not_before:
        raise ValidationError("deadline_ts must be after not_before.", code="invalid_deadline")
    return {
        "not_before": not_before,
        "deadline_at": deadline_at,
        "complete_within": complete_within,
        "priority": priority_clean(priority),
        "after": after_clean(after),
    }


def _schedule_check(*, account: Account, deadline_at, after) -> list[tuple[Batch, str]]:
    """The parents `after` names, each a batch of the account; refuses a deadline already past by
    the database's clock, the one the pipeline stops the batch by."""
    parents = _parents(account=account, after=after)
    if deadline_at is not None and deadline_at <= database_now(account_id=account.pk):
        raise ValidationError("deadline_ts has already passed.", code="invalid_deadline")
    return parents


def _schedule_digested(*, not_before, deadline_at, complete_within, priority, after) -> dict:
    """The time-and-order fields of a create's body, for its idempotency digest; only those given."""
    given = {
        "not_before": to_ts(not_before),
        "deadline_ts": to_ts(deadline_at),
        "complete_within": complete_within,
        "priority": priority if priority != PRIORITY_DEFAULT else None,
        "after": after or None,
    }
    return {name: value for name, value in given.items() if value is not None}


def _parents(*, account: Account, after: list[dict]) -> list[tuple[Batch, str]]:
    if not after:
        return []
    found = {
        str(parent.uuid): parent
        for parent in Batch.objects.filter(account=account, uuid__in=[item["batch"] for item in after])
    }
    if len(found) != len(after):
        # Exactly GET /batches/{batch}'s answer: another account's batch is as unknown as no batch.
        raise Http404("No such batch.")
    return [(found[item["batch"]], item["require"]) for item in after]


def database_now(*, account_id) -> datetime:
    """The database's time now, the clock a deadline is judged by (read along the account's row)."""
    return (
        Account.objects.filter(pk=account_id).annotate(now=DatabaseNow()).values_list("now", flat=True).get()
    )


def batch_cancel(*, batch: Batch, by_staff=None) -> Batch:
    """Asks the pipeline to stop. Asking again while it stops changes nothing. A cancel by a
    staff user (`by_staff`: the admin, or the pages on another account's batch) is recorded
    as theirs in the history, not the client's."""
    who = f"staff member {by_staff.get_username()}" if by_staff is not None else "the client"
    with _batch_row_waited_for():
        current = Batch.objects.select_for_update().get(pk=batch.pk)
        if current.status in CANCEL_REQUESTED:
            return current
        if current.status not in CANCELLABLE:
            raise _not_cancellable(current.status)
        cancelled = batch_transition(batch_id=current.pk, to=BatchStatus.CANCEL, note=f"cancelled by {who}")
        _enqueue_advance(current.pk)
    return cancelled


@contextmanager
def _batch_row_waited_for():
    """A transaction that stops a batch. A worker that froze holding the batch's row keeps it
    until the database ends its session (batches.pipeline.sessions): the stop waits that long,
    boundedly, and lands, rather than failing at the web's short lock timeout; past it (a holder
    that is not frozen but stuck), it answers 503 and nothing changed."""
    try:
        with transaction.atomic():
            role_set_local("stop")
            yield
    except OperationalError as error:
        if not is_lock_timeout(error):
            raise
        raise ApplicationError(
            "The batch is held by a worker that does not answer; nothing changed. Try again in a minute.",
            subcode="batch_busy",
            status_code=503,
        ) from error


def _not_cancellable(status: str) -> Conflict:
    if status == BatchStatus.DELETING:
        return Conflict("The batch is being deleted.", subcode="batch_deleting")
    if status in TERMINAL:
        return Conflict(
            f"The batch has finished ({status}); nothing is left to cancel.", subcode="batch_finished"
        )
    return Conflict(
        f"Every line has run ({status}); only the results file is being written.",
        subcode="batch_finishing",
    )


def batch_delete(*, batch: Batch) -> Batch:
    """Starts deletion: a finished batch goes to deleting; a running one is cancelled first,
    and one that is finishing or stopping is deleted by the pipeline once it gets there."""
    with _batch_row_waited_for():
        current = Batch.objects.select_for_update().get(pk=batch.pk)
        if current.status == BatchStatus.DELETING:
            return current
        requested_at = current.delete_requested_at or DatabaseNow()
        if current.status in TERMINAL:
            moved = batch_transition(
                batch_id=current.pk,
                to=BatchStatus.DELETING,
                note="deleted by the client",
                delete_requested_at=requested_at,
            )
        elif current.status in CANCELLABLE:
            moved = batch_transition(
                batch_id=current.pk,
                to=BatchStatus.CANCEL,
                note="deleted by the client: cancelling first",
                delete_requested_at=requested_at,
            )
        else:
            Batch.objects.filter(pk=current.pk).update(delete_requested_at=requested_at)
            moved = Batch.objects.get(pk=current.pk)
        _enqueue_advance(current.pk)
    return moved


# Time and order (docs/contract.md, section 14)

RESCHEDULABLE = ("not_before", "deadline_at", "priority")


def _staff_or_client(by_staff) -> str:
    return f"staff member {by_staff.get_username()}" if by_staff is not None else "the client"


def batch_pause(*, batch: Batch, by_staff=None) -> Batch:
    """processing -> paused: chunks running finish their lines, no chunk starts, no worker holds
    it. A paused batch comes back as it is; any other status is 409 batch_not_pausable."""
    with _batch_row_waited_for():
        current = Batch.objects.select_for_update().get(pk=batch.pk)
        if current.status == BatchStatus.PAUSED:
            return current
        if current.status != BatchStatus.PROCESSING or current.delete_requested_at is not None:
            raise Conflict(
                f"Only a processing batch can be paused; this one is {current.status}.",
                subcode="batch_not_pausable",
            )
        return batch_transition(
            batch_id=current.pk, to=BatchStatus.PAUSED, note=f"paused by {_staff_or_client(by_staff)}"
        )


def batch_resume(*, batch: Batch, by_staff=None) -> Batch:
    """paused -> processing, and its chunk work published again (its next step does, as at the
    start of processing; a batch whose last chunk committed while paused finishes). A
    processing batch comes back as it is; any other status is 409 batch_not_paused."""
    with _batch_row_waited_for():
        current = Batch.objects.select_for_update().get(pk=batch.pk)
        if current.status == BatchStatus.PROCESSING:
            return current
        if current.status != BatchStatus.PAUSED:
            raise Conflict(
                f"Only a paused batch can be resumed; this one is {current.status}.",
                subcode="batch_not_paused",
            )
        resumed = batch_transition(
            batch_id=current.pk, to=BatchStatus.PROCESSING, note=f"resumed by {_staff_or_client(by_staff)}"
        )
        _enqueue_advance(current.pk)
    return resumed


def batch_reschedule(*, batch: Batch, **changes) -> Batch:
    """Changes a batch's not_before, deadline_at (datetimes or None) and priority (an int), as
    cleaned by the caller, while it has not ended (409 batch_ended otherwise). Its next step is
    asked for: a new batch whose not_before moved to now or earlier starts, and one whose
    deadline moved into the past is stopped (else the sweep stops it)."""
    unknown = sorted(set(changes) - set(RESCHEDULABLE))
    if unknown:
        raise TypeError(f"batch_reschedule() cannot change {', '.join(unknown)}")
    with _batch_row_waited_for():
        current = Batch.objects.select_for_update().get(pk=batch.pk)
        ended = current.status in TERMINAL or current.status == BatchStatus.DELETING
        if ended or current.delete_requested_at:
            raise Conflict(
                f"The batch has ended ({current.status}); it cannot be rescheduled.", subcode="batch_ended"
            )
        if changes:
            Batch.objects.filter(pk=current.pk).update(**changes)
            _enqueue_advance(current.pk)
    return Batch.objects.get(pk=batch.pk)

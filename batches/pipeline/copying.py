"""Copying: the upload is streamed into the batch's own file, its SHA-256 computed on the way."""

import hashlib

from django.core.files import File

from batches.files import fresh_batch_file_name, storage_discard, storage_save_new
from batches.models import Batch, BatchStatus, Upload
from batches.pipeline.lease import Lease
from batches.pipeline.reading import StorageSource
from batches.pipeline.results import results_expiry
from batches.states import batch_transition
from batches.summaries import summary_without_lines

S = BatchStatus
COPY_BLOCK_BYTES = 1 << 20


class HashingReader:
    """A file-like reader that computes the SHA-256 of everything read through it and keeps
    the step's lease alive."""

    # Storage backends ask before rewinding (S3's does); a hash cannot be rewound.
    closed = False

    def __init__(self, source, lease: Lease):
        self.source = source
        self.lease = lease
        self.sha256 = hashlib.sha256()
        self.size = 0

    def seekable(self) -> bool:
        return False

    def read(self, size=-1):
        self.lease.tick()
        data = self.source.read(COPY_BLOCK_BYTES if size is None or size < 0 else size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def step_copy(batch: Batch, lease: Lease) -> Batch | None:
    target = fresh_batch_file_name(account_id=batch.account_id, batch_id=batch.pk, stem="input")
    upload = batch.upload
    with StorageSource(upload.file_name if upload else "", lease) as source:
        reader = HashingReader(source, lease)
        try:
            storage_save_new(target, File(reader, name="input"))
        except BaseException:
            storage_discard(target)
            raise
    computed = reader.sha256.hexdigest()
    if batch.hash and batch.hash != computed:
        storage_discard(target)
        moved = batch_transition(
            batch_id=batch.pk,
            to=S.HASH_MISMATCH,
            allowed_from=[S.COPYING],
            owner=lease.owner,
            note=f"The file's SHA-256 is {computed}.",
            computed_hash=computed,
            failure_reason=f"The given hash does not match the file's SHA-256 ({computed}).",
            results_expire_at=results_expiry(),
            summary=summary_without_lines(),
        )
    else:
        moved = batch_transition(
            batch_id=batch.pk,
            to=S.COPIED,
            allowed_from=[S.COPYING],
            owner=lease.owner,
            computed_hash=computed,
            input_file=target,
        )
        if moved is None:
            storage_discard(target)
    if moved is not None:
        upload_discard(upload)
    return moved


def upload_discard(upload: Upload | None) -> None:
    """The upload is spent once its batch holds its own copy (or discarded it)."""
    if upload is not None and upload.file_name:
        storage_discard(upload.file_name)
        Upload.objects.filter(pk=upload.pk).update(file_name="")

"""Where uploads and a batch's files live in storage (Django's default storage: local files or
S3), and the few storage moves the pipeline needs beyond Django's Storage API."""

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.files import File
from django.core.files.storage import FileSystemStorage, default_storage

SPOOL_FOLDER = "spool"


def upload_file_name(*, account_id, handler) -> str:
    return f"uploads/{account_id}/{handler}"


def batch_folder(*, account_id, batch_id) -> str:
    return f"batches/{account_id}/{batch_id}"


def batch_file_name(*, account_id, batch_id, name: str) -> str:
    return f"{batch_folder(account_id=account_id, batch_id=batch_id)}/{name}"


def fresh_batch_file_name(*, account_id, batch_id, stem: str, suffix: str = "") -> str:
    """A name no earlier run used: a step writes its file under one and publishes it by
    recording the name on the batch, so a file is never rewritten while a chunk reads it."""
    return batch_file_name(
        account_id=account_id, batch_id=batch_id, name=f"{stem}-{uuid.uuid4().hex}{suffix}"
    )


def storage_save_new(name: str, content) -> None:
    """Saves under exactly `name`, a fresh name from `fresh_batch_file_name`."""
    saved = default_storage.save(name, content)
    if saved != name:
        default_storage.delete(saved)
        raise FileExistsError(f"storage already held {name}")


def renames_into_place() -> bool:
    """Django's own FileSystemStorage moves a file that has a path; a subclass may read it."""
    return default_storage.__class__ is FileSystemStorage


@contextmanager
def storage_spool() -> Iterator:
    """A temporary file for a step's output. With local storage it lies in the storage's own
    folder, so storage_save_spooled renames it into place instead of copying it (the results
    of a million lines, written twice when cancelled, are a few hundred MB); it is removed on
    exit unless it was saved. Elsewhere (S3, or a storage class of its own) an ordinary
    temporary file."""
    if not renames_into_place():
        with tempfile.TemporaryFile() as spool:
            yield spool
        return
    folder = Path(default_storage.path(SPOOL_FOLDER))
    folder.mkdir(parents=True, exist_ok=True)
    spool = tempfile.NamedTemporaryFile(dir=folder, delete=False)  # noqa: SIM115 - removed below
    try:
        with spool:
            yield spool
    finally:
        Path(spool.name).unlink(missing_ok=True)


class _SpooledFile(File):
    """A spool as Django's FileSystemStorage moves it: by its path (`file_move_safe`)."""

    def temporary_file_path(self) -> str:
        return self.file.name


def storage_save_spooled(name: str, spool, reader) -> None:
    """Saves what the caller wrote into a storage_spool() under exactly `name`: renamed into
    place with local storage; else read from its start through `reader` (a TickingReader
    over the spool, say, to keep a lease alive)."""
    spool.flush()
    spool.seek(0)
    if renames_into_place() and isinstance(getattr(spool, "name", None), str):
        storage_save_new(name, _SpooledFile(spool, name=os.path.basename(name)))
    else:
        storage_save_new(name, File(reader, name=os.path.basename(name)))


def storage_discard(name: str) -> None:
    """Deletes a stored file if it is there."""
    if name:
        default_storage.delete(name)


def storage_files_under(folder: str) -> list[str]:
    """Every file below `folder`, at any depth."""
    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return []
    names = [f"{folder}/{name}" for name in files]
    for name in folders:
        names += storage_files_under(f"{folder}/{name}")
    return names


def storage_remove_folder(folder: str) -> None:
    """Deletes every file below `folder` and, with local storage, the emptied folders up to
    (not including) the storage root; S3 has no folders to leave behind."""
    for name in storage_files_under(folder):
        default_storage.delete(name)
    if not isinstance(default_storage, FileSystemStorage):
        return
    path = default_storage.path(folder)
    root = os.path.realpath(default_storage.location)
    for current, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(current)
        except OSError:
            return
    parent = os.path.dirname(path)
    while os.path.realpath(parent).startswith(root + os.sep):
        try:
            os.rmdir(parent)
        except OSError:
            return
        parent = os.path.dirname(parent)

"""Housekeeping removes what a killed process left behind: an upload body no row names (a PUT
cut short), a results spool a killed worker never renamed into place; never a file in use."""

import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage

from batches.files import SPOOL_FOLDER
from batches.pipeline import maintenance
from tests.support.factories import UploadFactory

pytestmark = pytest.mark.django_db


def stored(name: str, *, hours_old: float) -> str:
    saved = default_storage.save(name, ContentFile(b"left behind"))
    then = time.time() - hours_old * 3600
    os.utime(default_storage.path(saved), (then, then))
    return saved


@pytest.fixture(autouse=True)
def local_storage():
    if not isinstance(default_storage, FileSystemStorage):
        pytest.skip("file ages are set on local files")


def test_orphaned_upload_bodies_go_once_old_and_referenced_ones_stay(caller):
    kept = UploadFactory(caller=caller, content=b'{"description": {}}\n')
    os.utime(default_storage.path(kept.file_name), (0, 0))
    orphan = stored(f"uploads/{caller.account.pk}/cut-short.part", hours_old=3)
    recent = stored(f"uploads/{caller.account.pk}/still-arriving.part", hours_old=0)
    assert maintenance.uploads_remove_orphans() >= 1
    assert not default_storage.exists(orphan)
    assert default_storage.exists(recent) and default_storage.exists(kept.file_name)


def test_stale_spools_go_and_fresh_ones_stay():
    stale = stored(f"{SPOOL_FOLDER}/tmp-stale", hours_old=2)
    fresh = stored(f"{SPOOL_FOLDER}/tmp-fresh", hours_old=0)
    assert maintenance.spool_remove_stale() >= 1
    assert not default_storage.exists(stale)
    assert default_storage.exists(fresh)

"""Housekeeping removes what a killed process left behind: an upload body no row names (a PUT
cut short), a results spool a killed worker never renamed into place; never a file in use."""

import os
import time
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.utils import timezone

from batches.files import SPOOL_FOLDER
from batches.models import Batch, BatchStatus
from batches.pipeline import maintenance
from tests.support.factories import BatchFactory, UploadFactory

S = BatchStatus

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


def test_a_retention_run_asks_to_delete_the_longest_expired_first_and_no_more_than_its_bound(
    caller, monkeypatch
):
    monkeypatch.setattr(maintenance, "RETENTION_DELETES_PER_RUN", 2)
    now = timezone.now()
    expired_at = {hours: BatchFactory(caller=caller, status=S.COMPLETED) for hours in (1, 3, 2, -1)}
    for hours, batch in expired_at.items():
        Batch.objects.filter(pk=batch.pk).update(results_expire_at=now - timedelta(hours=hours))
    asked: list[str] = []
    assert maintenance.batches_past_retention(asked.append) == 2
    assert asked == [str(expired_at[3].pk), str(expired_at[2].pk)]
    assert maintenance.batches_past_retention(asked.append) == 1
    assert asked[2:] == [str(expired_at[1].pk)]
    assert maintenance.batches_past_retention(asked.append) == 0
    kept = Batch.objects.get(pk=expired_at[-1].pk)
    assert kept.delete_requested_at is None, "a batch still within retention is kept"

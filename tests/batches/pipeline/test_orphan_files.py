"""A step whose publishing transition fails leaves its fresh file in the batch's folder, recorded
by no batch: housekeeping deletes it once older than ORPHAN_FILE_GRACE_SECONDS, and never a
file a batch records or one younger than the grace (a step may be writing it now)."""

from unittest import mock

import pytest
from django.db import OperationalError
from django.test import override_settings

from batches.files import batch_folder, storage_files_under
from batches.models import Batch, BatchStatus
from batches.pipeline import driver
from batches.states import batch_transition
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import InlinePipeline, read_results

S = BatchStatus


def recorded_files(batch) -> set[str]:
    batch = Batch.objects.get(pk=batch.pk)
    return {batch.input_file, batch.prepared_file, batch.results_file, batch.errors_file} - {""}


def completed_after_a_failed_publish(caller):
    """A batch whose results step wrote its files, failed to publish them (the database went
    away in the transition), and completed when it ran again."""
    batch = BatchFactory(caller=caller, content=jsonl([{}, {}]))
    failures = []

    def completing_fails_once(**move):
        if move["to"] == S.COMPLETED and not failures:
            failures.append(move)
            raise OperationalError("server closed the connection unexpectedly")
        return batch_transition(**move)

    runner = InlinePipeline()
    runner.advance(batch)
    with (
        mock.patch("batches.pipeline.results.batch_transition", side_effect=completing_fails_once),
        pytest.raises(OperationalError),
    ):
        runner.drain()
    assert failures and Batch.objects.get(pk=batch.pk).status == S.WRITING_RESULTS
    runner.advance(batch)
    runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.COMPLETED
    return batch


def folder_of(batch) -> set[str]:
    return set(storage_files_under(batch_folder(account_id=batch.account_id, batch_id=batch.pk)))


@override_settings(ORPHAN_FILE_GRACE_SECONDS=0)
def test_housekeeping_removes_the_files_a_failed_transition_orphaned_and_keeps_the_recorded(caller):
    batch = completed_after_a_failed_publish(caller)
    orphans = folder_of(batch) - recorded_files(batch)
    assert len(orphans) == 2, orphans  # the first run's results and errors parts
    driver.housekeeping(InlinePipeline().enqueue)
    assert folder_of(batch) == recorded_files(batch)
    assert len(read_results(batch.results_file)) == 2


def test_housekeeping_keeps_an_unrecorded_file_younger_than_the_grace(caller):
    batch = completed_after_a_failed_publish(caller)
    before = folder_of(batch)
    driver.housekeeping(InlinePipeline().enqueue)
    assert folder_of(batch) == before

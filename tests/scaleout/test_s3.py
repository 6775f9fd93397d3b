"""The service on S3 (moto's server): the client PUTs to and GETs from presigned URLs with no
secret, the bytes never pass through the service, and the pipeline reads and writes the bucket.
These run in every CI mode, each test on its own fresh bucket."""

import hashlib

import pytest
import requests
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import override_settings

from batches import services
from batches.files import upload_file_name
from batches.models import Batch, BatchStatus
from batches.pipeline import maintenance
from batches.storage import read_range
from tests.support.assertions import assert_error
from tests.support.batch_api import create_batch
from tests.support.batch_files import twin_lines
from tests.support.inline_pipeline import run_batch, stop_after_first_chunk
from tests.support.s3_bucket import OCTETS, download, presigned_upload
from tests.support.waiting import wait_terminal
from tests.support.worker_processes import WorkerProcess
from twins.models import Twin

S = BatchStatus


def test_presigned_upload_batch_and_presigned_download(caller, s3):
    content = twin_lines(7)
    handler = presigned_upload(caller, s3, content)
    upload_key = upload_file_name(account_id=caller.account.pk, handler=handler)
    assert s3.read(upload_key) == content

    digest = hashlib.sha256(content).hexdigest()
    created = create_batch(caller, handler, hash=digest)
    assert created.status_code == 201, created.content
    batch = run_batch(Batch.objects.get(pk=created.json()["batch"]))

    assert batch.status == S.COMPLETED
    assert (batch.total, batch.succeeded, batch.failed) == (7, 7, 0)
    assert batch.computed_hash == digest
    assert s3.read(batch.input_file) == content
    assert upload_key not in s3, "the spent upload is removed from the bucket"
    downloaded = download(caller, s3, batch.pk)
    assert downloaded.headers["Content-Disposition"] == f'attachment; filename="{batch.pk}-results.jsonl"'
    assert downloaded.content == s3.read(batch.results_file)
    lines = downloaded.text.splitlines()
    assert len(lines) == 7 and all('"status":201' in line for line in lines)
    assert Twin.objects.filter(account=caller.account).count() == 7


def test_upload_is_recorded_when_the_batch_is_created(caller, s3):
    issued = caller.client.post("/cache").json()
    assert_error(create_batch(caller, issued["handler"]), 400, "handler_not_uploaded")
    requests.put(issued["url"], data=b"first\n", headers=OCTETS, timeout=10)
    csv = b'description\n{"n": 1}\n{"n": 2}\n'
    # A second PUT replaces the first until a batch takes the handler.
    requests.put(issued["url"], data=csv, headers={"Content-Type": "text/csv"}, timeout=10)
    created = create_batch(caller, issued["handler"])
    assert created.status_code == 201, created.content
    batch = Batch.objects.select_related("upload").get(pk=created.json()["batch"])
    assert (batch.upload.size, batch.upload.content_type) == (len(csv), "text/csv")
    assert batch.upload.uploaded_at is not None
    assert run_batch(batch).succeeded == 2
    assert_error(create_batch(caller, issued["handler"]), 400, "handler_used")


def test_handler_rules_hold_with_direct_uploads(caller, stranger, s3, django_capture_on_commit_callbacks):
    handler = presigned_upload(caller, s3, twin_lines(1))
    assert_error(create_batch(stranger, handler), 404, "handler_unknown")
    with override_settings(BATCH_FILE_MAX_BYTES=10):
        assert_error(create_batch(caller, handler), 413, "file_too_large")
    with django_capture_on_commit_callbacks(execute=True):
        assert caller.client.delete(f"/cache/{handler}").status_code == 200
    assert upload_file_name(account_id=caller.account.pk, handler=handler) not in s3
    assert_error(create_batch(caller, handler), 400, "handler_invalidated")


def test_unused_upload_leaves_the_bucket_when_it_expires(caller, s3):
    handler = presigned_upload(caller, s3, b"never used\n")
    services.Upload.objects.filter(handler=handler).update(expires_at="2000-01-01T00:00:00Z")
    assert maintenance.uploads_expire() == 1
    assert s3.keys() == set()


def test_ranged_read_takes_only_the_range(s3):
    name = default_storage.save("ranges/file", ContentFile(b"0123456789"))
    assert read_range(name, 3, 7) == b"3456"
    assert read_range(name, 7, 7) == b""


@override_settings(BATCH_CHUNK_LINES=3)
def test_cancelled_batch_reads_unexecuted_lines_by_range(caller, s3):
    handler = presigned_upload(caller, s3, twin_lines(8))
    batch = Batch.objects.get(pk=create_batch(caller, handler).json()["batch"])
    batch = stop_after_first_chunk(batch)
    assert batch.status == S.CANCELLED
    results = download(caller, s3, batch.pk).text.splitlines()
    assert [('"status":201' in line) for line in results] == [True] * 3 + [False] * 5
    assert len(download(caller, s3, batch.pk, "errors").text.splitlines()) == 5


def test_deleted_batch_leaves_nothing_in_the_bucket(caller, s3):
    handler = presigned_upload(caller, s3, twin_lines(2))
    batch = run_batch(Batch.objects.get(pk=create_batch(caller, handler).json()["batch"]))
    assert batch.results_file in s3
    assert caller.client.delete(f"/batches/{batch.pk}").status_code == 200
    assert run_batch(batch) is None
    assert s3.keys() == set()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_real_worker_runs_a_batch_on_s3(caller, s3):
    worker = WorkerProcess(extra_env=s3.env(), log_name="worker-s3").start()
    try:
        content = twin_lines(2500)
        handler = presigned_upload(caller, s3, content)
        created = create_batch(caller, handler, hash=hashlib.sha256(content).hexdigest())
        batch = wait_terminal(Batch.objects.get(pk=created.json()["batch"]), timeout=120, worker=worker)
    finally:
        worker.discard()
    assert batch.status == S.COMPLETED, batch.failure_reason
    assert (batch.total, batch.succeeded) == (2500, 2500)
    downloaded = download(caller, s3, batch.pk)
    assert downloaded.content == s3.read(batch.results_file)
    assert [int(line.split(b",", 1)[0][8:]) for line in downloaded.content.splitlines()] == list(
        range(1, 2501)
    )

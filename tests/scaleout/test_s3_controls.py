"""Batch controls on S3 (moto's server): a dry run writes its results to the bucket, and the
lines run so far are served by this server while the batch runs, then the final file from
the bucket."""

import json
from urllib.parse import urlsplit

import requests
from django.test import override_settings

from batches.models import Batch, BatchStatus
from tests.support.assertions import assert_error
from tests.support.batch_api import create_batch
from tests.support.batch_files import jsonl, twin_lines
from tests.support.inline_pipeline import first_chunk_run, run_batch
from tests.support.s3_bucket import download, presigned_upload
from twins.models import Twin

S = BatchStatus


def test_a_dry_run_on_s3(caller, s3):
    handler = presigned_upload(caller, s3, twin_lines(5))
    batch = run_batch(Batch.objects.get(pk=create_batch(caller, handler, validate_only=True).json()["batch"]))
    assert batch.status == S.COMPLETED and not Twin.objects.exists()
    lines = [json.loads(line) for line in download(caller, s3, batch.pk).text.splitlines()]
    assert [line["error"]["subcode"] for line in lines] == ["validate_only"] * 5


@override_settings(BATCH_CHUNK_LINES=3)
def test_lines_run_so_far_on_s3_then_the_final_file_from_the_bucket(caller, s3):
    handler = presigned_upload(caller, s3, jsonl({"description": {"n": n}} for n in range(9)))
    batch = Batch.objects.get(pk=create_batch(caller, handler).json()["batch"])
    runner = first_chunk_run(batch)

    offered = caller.client.get(f"/batches/{batch.pk}", {"download": "true"}).json()["download"]
    assert offered["partial"] is True
    path = urlsplit(offered["url"]).path
    partial = b"".join(caller.client.get(path).streaming_content).decode().splitlines()
    assert [json.loads(line)["line"] for line in partial] == [1, 2, 3]

    runner.drain()
    batch.refresh_from_db()
    assert_error(caller.client.get(path), 410, "download_url_ended")
    fresh = caller.client.get(f"/batches/{batch.pk}", {"download": "true"}).json()["download"]["url"]
    assert urlsplit(fresh).netloc == urlsplit(s3.endpoint).netloc
    final = requests.get(fresh, timeout=10).text.splitlines()
    assert final[:3] == partial and len(final) == 9

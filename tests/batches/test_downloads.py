"""Download names and types come from one place (batches.storage.batch_download): results and
errors are JSON Lines; the input file keeps its own format, CSV or JSON Lines, gzipped or not."""

import gzip
import re
import time
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.urls import reverse
from rest_framework.test import APIClient

from batches.storage import DOWNLOAD_SALT
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import run_batch

pytestmark = pytest.mark.django_db

CSV = b'description\n{"n": 1}\n'
JSONL = b'{"description": {"n": 1}}\n'


def download(url: str):
    response = APIClient().get(urlsplit(url).path)
    assert response.status_code == 200, response.content
    return response


@pytest.mark.parametrize(
    "content, declared_type, suffix, content_type",
    [
        (CSV, "text/csv", ".csv", "text/csv"),
        (CSV, "application/octet-stream", ".csv", "text/csv"),  # told apart as the pipeline does
        (JSONL, "application/x-ndjson", ".jsonl", "application/x-ndjson"),
        (gzip.compress(CSV), "text/csv", ".csv.gz", "application/gzip"),
        (gzip.compress(JSONL), "application/gzip", ".jsonl.gz", "application/gzip"),
    ],
)
def test_the_admins_input_link_keeps_the_files_own_type(
    admin_client, caller, content, declared_type, suffix, content_type
):
    batch = BatchFactory(caller=caller, content=content, content_type=declared_type)
    page = admin_client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()
    url = re.search(r'<a href="([^"]+)">input file</a>', page).group(1).replace("&amp;", "&")

    response = download(url)
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="{batch.uuid}-input{suffix}"'
    assert b"".join(response.streaming_content) == content


def test_results_are_json_lines_under_their_extension(caller):
    batch = run_batch(BatchFactory(caller=caller))
    url = caller.client.get(f"/batches/{batch.uuid}?download=true").json()["download"]["url"]
    response = download(url)
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == f'attachment; filename="{batch.uuid}-results.jsonl"'


def test_a_url_signed_before_types_were_signed_still_serves_json_lines(caller):
    """URLs handed out by the previous version carry no type; they were all for results."""
    batch = run_batch(BatchFactory(caller=caller))
    token = signing.dumps(
        {"name": batch.results_file, "filename": f"{batch.uuid}-results.jsonl", "exp": time.time() + 60},
        salt=DOWNLOAD_SALT,
    )
    response = download(reverse("download_file", kwargs={"token": token}))
    assert response["Content-Type"] == "application/x-ndjson"

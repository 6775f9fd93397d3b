"""POST /cache, PUT {url}, DELETE /cache/{handler}."""

import io
import os
import subprocess
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from django.core.files.storage import default_storage
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from batches import services
from batches.files import upload_file_name
from batches.models import Upload
from batchsite.errors import ApplicationError
from tests.support.assertions import assert_error
from tests.support.batch_api import create_batch, put_file, upload_url


def stored_names(upload: Upload) -> list[str]:
    """Every file in storage under the upload's name, whatever suffix a PUT gave it."""
    base = upload_file_name(account_id=upload.account_id, handler=upload.handler)
    folder, prefix = base.rsplit("/", 1)
    if not default_storage.exists(folder):
        return []
    return [f"{folder}/{name}" for name in default_storage.listdir(folder)[1] if name.startswith(prefix)]


def test_create_upload_url_answers_url_handler_and_validity(caller):
    before = time.time()
    issued = upload_url(caller.client)
    assert set(issued) == {"url", "handler", "validity_ts"}
    assert issued["url"].startswith("http://testserver/uploads/")
    assert before + 3600 - 1 <= issued["validity_ts"] <= time.time() + 3600
    assert round(issued["validity_ts"], 3) == issued["validity_ts"]
    assert Upload.objects.get(handler=issued["handler"]).account == caller.account


def test_put_needs_no_secret_and_a_second_put_replaces_the_bytes(caller, django_capture_on_commit_callbacks):
    issued = upload_url(caller.client)
    first = put_file(issued["url"], b"first\n")
    assert first.status_code == 200, first.content
    assert first.json() == {"handler": issued["handler"], "size": 6}

    with django_capture_on_commit_callbacks(execute=True):
        second = put_file(issued["url"], b"second version\n", content_type="text/csv")
    assert second.status_code == 200
    upload = Upload.objects.get(handler=issued["handler"])
    assert upload.size == 15 and upload.content_type == "text/csv"
    assert default_storage.open(upload.file_name).read() == b"second version\n"
    assert stored_names(upload) == [upload.file_name]


def test_a_tampered_url_is_refused(caller):
    issued = upload_url(caller.client)
    forged = issued["url"][:-3] + ("AAA" if not issued["url"].endswith("AAA") else "BBB")
    assert_error(put_file(forged, b"x"), 403, "upload_url_invalid")


def test_an_expired_url_is_refused(caller):
    issued = upload_url(caller.client)
    Upload.objects.filter(handler=issued["handler"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(put_file(issued["url"], b"x"), 403, "upload_url_expired")


def test_an_invalidated_url_is_refused(caller):
    issued = upload_url(caller.client)
    assert caller.client.delete(f"/cache/{issued['handler']}").status_code == 200
    assert_error(put_file(issued["url"], b"x"), 403, "upload_url_invalidated")


def test_a_handler_a_batch_took_cannot_change(caller):
    issued = upload_url(caller.client)
    put_file(issued["url"], b'{"description": {}}\n')
    assert create_batch(caller, issued["handler"]).status_code == 201
    assert_error(put_file(issued["url"], b"other"), 409, "upload_used")


@override_settings(BATCH_FILE_MAX_BYTES=1000)
def test_over_limit_upload_is_413_and_leaves_nothing_behind(caller):
    issued = upload_url(caller.client)
    upload = Upload.objects.get(handler=issued["handler"])
    assert_error(put_file(issued["url"], b"x" * 1001), 413, "file_too_large")
    upload.refresh_from_db()
    assert upload.uploaded_at is None and upload.file_name == ""
    assert stored_names(upload) == []

    assert put_file(issued["url"], b"x" * 1000).status_code == 200


@override_settings(BATCH_FILE_MAX_BYTES=1000)
def test_over_limit_second_put_keeps_the_first_file(caller):
    issued = upload_url(caller.client)
    put_file(issued["url"], b"kept")
    assert_error(put_file(issued["url"], b"x" * 5000), 413, "file_too_large")
    upload = Upload.objects.get(handler=issued["handler"])
    assert default_storage.open(upload.file_name).read() == b"kept"
    assert stored_names(upload) == [upload.file_name]


def test_invalidate_deletes_an_unused_file(caller):
    issued = upload_url(caller.client)
    put_file(issued["url"], b"unused")
    upload = Upload.objects.get(handler=issued["handler"])
    assert stored_names(upload)

    invalidated = caller.client.delete(f"/cache/{issued['handler']}")
    assert invalidated.status_code == 200
    assert invalidated.json() == {"handler": issued["handler"]}
    upload.refresh_from_db()
    assert upload.invalidated_at is not None and upload.file_name == ""
    # Invalidating twice is harmless.
    assert caller.client.delete(f"/cache/{issued['handler']}").status_code == 200


def test_invalidate_keeps_the_file_a_batch_holds(caller, django_capture_on_commit_callbacks):
    issued = upload_url(caller.client)
    put_file(issued["url"], b'{"description": {}}\n')
    with django_capture_on_commit_callbacks(execute=False):
        assert create_batch(caller, issued["handler"]).status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        assert caller.client.delete(f"/cache/{issued['handler']}").status_code == 200
    upload = Upload.objects.get(handler=issued["handler"])
    assert default_storage.exists(upload.file_name)


def test_invalidate_deletes_the_file_after_commit(caller, django_capture_on_commit_callbacks):
    issued = upload_url(caller.client)
    put_file(issued["url"], b"unused")
    upload = Upload.objects.get(handler=issued["handler"])
    with django_capture_on_commit_callbacks(execute=True):
        caller.client.delete(f"/cache/{issued['handler']}")
    assert stored_names(upload) == []


def test_another_accounts_or_unknown_handler_is_404(caller, stranger):
    issued = upload_url(caller.client)
    assert_error(stranger.client.delete(f"/cache/{issued['handler']}"), 404, "not_found")
    assert_error(caller.client.delete("/cache/c803382b-f175-4e36-b807-b08651d3d297-1688480283"), 404)


def test_invalidate_needs_its_action(make_caller):
    limited = make_caller(statement={"effect": "deny", "actions": ["invalidate_upload_url"]})
    issued = upload_url(limited.client)
    assert_error(limited.client.delete(f"/cache/{issued['handler']}"), 403, "action_not_allowed")


def test_put_without_content_length_is_411(caller):
    issued = upload_url(caller.client)
    response = APIClient().generic("PUT", urlsplit(issued["url"]).path, data=b"", CONTENT_LENGTH="")
    assert_error(response, 411, "length_required")


class GeneratedBody:
    """A body of `size` bytes made a block at a time, so the client holds one block."""

    block = b'{"description": {"k": "' + b"v" * 990 + b'"}}\n'

    def __init__(self, size: int):
        self.size = size
        self.sent = 0

    def __len__(self):
        return self.size

    def read(self, amount: int = -1) -> bytes:
        amount = min(amount if amount > 0 else len(self.block), len(self.block), self.size - self.sent)
        self.sent += amount
        return self.block[:amount]


def resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.mark.slow
@override_settings(BATCH_FILE_MAX_BYTES=300 * 1024 * 1024)
def test_a_200_mb_put_keeps_the_server_memory_flat(caller, live_server):
    """The live server runs in this process: its resident memory is sampled during the PUT.
    Reading the body whole would add 200 MB; streaming adds at most a few blocks."""
    size = 200 * 1024 * 1024
    issued = upload_url(caller.client)
    url = live_server.url + urlsplit(issued["url"]).path
    baseline = resident_kib()
    peak = baseline
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident_kib())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        response = requests.put(url, data=GeneratedBody(size), timeout=120)
    finally:
        done.set()
        sampler.join()
    assert response.status_code == 200, response.text
    upload = Upload.objects.get(handler=issued["handler"])
    try:
        assert upload.size == size and default_storage.size(upload.file_name) == size
        growth_mib = (peak - baseline) / 1024
        print(f"RSS growth during a 200 MB PUT: {growth_mib:.1f} MiB")
        assert growth_mib < 32
    finally:
        default_storage.delete(upload.file_name)


def test_a_body_shorter_than_its_content_length_is_refused_and_not_kept(caller):
    issued = upload_url(caller.client)
    upload = Upload.objects.get(handler=issued["handler"])
    with pytest.raises(ApplicationError) as refused:
        services.upload_store(
            handler=upload.handler, stream=io.BytesIO(b"cut short"), content_length=100, content_type=""
        )
    assert refused.value.subcode == "incomplete_upload" and refused.value.status_code == 400
    upload.refresh_from_db()
    assert upload.uploaded_at is None and stored_names(upload) == []


@pytest.fixture
def full_storage(tmp_path, settings):
    """The default storage on a real 1 MiB tmpfs (needs root to mount, as in CI)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(folder)}},
    }
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_put_to_full_storage_is_507_and_leaves_nothing_behind(caller, full_storage):
    issued = upload_url(caller.client)
    assert put_file(issued["url"], b"kept\n").status_code == 200
    assert_error(put_file(issued["url"], b"x" * (2 * 1024 * 1024)), 507, "insufficient_storage")
    upload = Upload.objects.get(handler=issued["handler"])
    assert default_storage.open(upload.file_name).read() == b"kept\n"
    assert stored_names(upload) == [upload.file_name]

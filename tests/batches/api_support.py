"""Shared steps of the upload and batch API tests."""

from urllib.parse import urlsplit

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from batches.files import batch_file_name
from batches.models import Batch, BatchStatusChange

BATCHABLE = "create_twin"
NOT_BATCHABLE = "scan_twins"


def upload_url(client) -> dict:
    response = client.post("/cache")
    assert response.status_code == 201, response.content
    return response.json()


def put_file(url: str, data: bytes, content_type: str = "application/x-ndjson"):
    """PUT through Django's test client, with no credentials: the URL is the credential."""
    return APIClient().put(urlsplit(url).path, data=data, content_type=content_type)


def uploaded_handler(caller, data: bytes = b'{"description": {"n": 1}}\n') -> str:
    issued = upload_url(caller.client)
    assert put_file(issued["url"], data).status_code == 200
    return issued["handler"]


def create_batch(caller, handler: str, operation: str = BATCHABLE, headers=None, **body):
    return caller.client.post(
        "/batches", {"handler": handler, "operation": operation, **body}, format="json", headers=headers
    )


def batch_in(status: str, *, account, operation: str = BATCHABLE, **fields) -> Batch:
    """A batch placed straight in a status, as the pipeline would have left it (test setup)."""
    batch = Batch.objects.create(account=account, operation=operation, status=status, **fields)
    BatchStatusChange.objects.create(batch=batch, from_status="", to_status=status, note="test setup")
    return batch


def stored_results(batch: Batch, text: str, *, field: str = "results_file") -> str:
    """Test setup: writes a results file and points the batch at it, as the pipeline would."""
    target = batch_file_name(account_id=batch.account_id, batch_id=batch.uuid, name=f"{field}.jsonl")
    name = default_storage.save(target, ContentFile(text))
    Batch.objects.filter(pk=batch.pk).update(**{field: name})
    return name

"""The steps a client takes through the upload and batch API."""

from urllib.parse import urlsplit

from rest_framework.test import APIClient

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

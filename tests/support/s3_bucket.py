"""An S3 bucket on moto's server, for tests that run the service against S3, and a client's
steps through the presigned URLs the service gives for it."""

import uuid
from urllib.parse import urlsplit

import boto3
import requests

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
OCTETS = {"Content-Type": "application/octet-stream"}


class S3Bucket:
    """A fresh bucket on the server at `endpoint`, seen with the credentials the service has."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.name = f"batches-{uuid.uuid4().hex[:12]}"
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )
        self.client.create_bucket(Bucket=self.name)

    def storage(self) -> dict:
        """The STORAGES entry that settings.py makes of `env()`."""
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": self.name,
                "endpoint_url": self.endpoint,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "region_name": REGION,
                "max_memory_size": 8 * 1024 * 1024,
                "signature_version": "s3v4",
            },
        }

    def env(self) -> dict:
        """The variables that point a process started by a test (a worker) at this bucket."""
        return {
            "AWS_STORAGE_BUCKET_NAME": self.name,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_S3_REGION_NAME": REGION,
        }

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def keys(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {entry["Key"] for page in pages for entry in page.get("Contents", [])}


def presigned_upload(caller, s3: S3Bucket, content: bytes) -> str:
    """POST /cache, then a plain PUT of the bytes to the URL it gave; returns the handler."""
    issued = caller.client.post("/cache").json()
    assert urlsplit(issued["url"]).netloc == urlsplit(s3.endpoint).netloc, "the URL points at the bucket"
    put = requests.put(issued["url"], data=content, headers=OCTETS, timeout=10)
    assert put.status_code == 200, put.text
    return issued["handler"]


def download(caller, s3: S3Bucket, batch_id, part: str = "results") -> requests.Response:
    """GET ?download=true, then a plain GET of the presigned URL it gave."""
    answer = caller.client.get(f"/batches/{batch_id}", {"download": "true", "part": part})
    assert answer.status_code == 200, answer.content
    url = answer.json()["download"]["url"]
    assert urlsplit(url).netloc == urlsplit(s3.endpoint).netloc, "the URL points at the bucket"
    downloaded = requests.get(url, timeout=10)
    assert downloaded.status_code == 200, downloaded.text
    return downloaded

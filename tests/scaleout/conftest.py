import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import override_settings
from moto.server import ThreadedMotoServer
from storages.backends.s3 import S3Storage

from tests.support.ports import free_port
from tests.support.s3_bucket import S3Bucket


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's S3 in server mode on loopback: real HTTP, so presigned URLs work as on AWS."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint) -> S3Bucket:
    """The service's default storage on a fresh S3 bucket for one test. Django's own
    `setting_changed` handler drops the cached storage backends (`storages`) and the lazy
    `default_storage` when STORAGES changes, and again when the override ends."""
    bucket = S3Bucket(moto_endpoint)
    with override_settings(STORAGES={**settings.STORAGES, "default": bucket.storage()}):
        assert isinstance(default_storage, S3Storage)
        yield bucket

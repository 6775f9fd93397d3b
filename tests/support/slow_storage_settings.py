"""Test settings for worker processes of the fault tests: local file storage that reads and
writes at SLOW_STORAGE_BYTES_PER_SECOND, so a test can act while a step is under way.
Used as DJANGO_SETTINGS_MODULE=tests.support.slow_storage_settings by the workers those tests
start."""

import os
import time

from django.core.files import File
from django.core.files.storage import FileSystemStorage

from batchsite.settings import *  # noqa: F403 - these are the service's settings, storage aside
from batchsite.settings import STORAGES

BYTES_PER_SECOND = float(os.environ.get("SLOW_STORAGE_BYTES_PER_SECOND", "3000000"))


def pause_for(data: bytes) -> bytes:
    time.sleep(len(data) / BYTES_PER_SECOND)
    return data


class SlowFile(File):
    def read(self, size=-1):
        return pause_for(self.file.read(size))


class SlowStream:
    """What a storage backend reads a file to be saved from, slowed down."""

    def __init__(self, content):
        self.content = content

    def read(self, size=-1):
        return pause_for(self.content.read(size))


class SlowFileSystemStorage(FileSystemStorage):
    def _open(self, name, mode="rb"):
        opened = super()._open(name, mode)
        return SlowFile(opened.file, name=opened.name)

    def _save(self, name, content):
        return super()._save(name, File(SlowStream(content), name=content.name))


STORAGES = {
    **STORAGES,
    "default": {
        **STORAGES["default"],
        "BACKEND": "tests.support.slow_storage_settings.SlowFileSystemStorage",
    },
}

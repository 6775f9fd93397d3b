import os
import subprocess
import sys

import pytest
from django.conf import settings

from batchsite.celery import app as celery_app
from tests.support.worker_processes import WorkerProcess


@pytest.fixture
def worker_factory():
    """Starts real `celery worker` processes on demand; stops them after the test."""
    celery_app.control.purge()
    started = []

    def start(**options) -> WorkerProcess:
        worker = WorkerProcess(**options).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.discard()


@pytest.fixture
def cli(caller, live_server):
    """Runs the command-line client in its own process against the live server, as `caller`."""
    env = {**os.environ, "BATCH_API_URL": live_server.url, "BATCH_API_SECRET": caller.secret}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "batches.cli", *args],
            env=env,
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run

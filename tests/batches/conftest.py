import pytest

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
        worker.stop()

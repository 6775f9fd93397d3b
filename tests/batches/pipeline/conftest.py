import pytest

from batchsite.celery import app as celery_app
from tests.support.worker_processes import WorkerProcess


@pytest.fixture
def two_workers(request):
    """Two `celery worker` processes (two pool processes each), named after the test."""
    celery_app.control.purge()
    name = request.node.originalname[5:30]
    workers = [WorkerProcess(log_name=f"{name}-{n}", node_name=f"{name}-{n}@%h").start() for n in range(2)]
    yield workers
    for worker in workers:
        worker.discard()

"""A million-line batch on a real worker keeps the worker's memory flat (docs/contract.md, section 7),
and so does validating a million-line mixed file (section 16).

Run only on PostgreSQL (CI's services mode): on SQLite the million rows take minutes."""

import json
import os
import tempfile
import time
from collections.abc import Iterable

import pytest
from django.db import connection

from batches import services
from batches.models import BatchStatus
from batchsite.celery import app as celery_app
from tests.support.infrastructure_faults import once_per_database
from tests.support.mixed_files import device_lines
from tests.support.process_memory import PeakMemory
from tests.support.waiting import wait_terminal
from tests.support.worker_processes import WorkerProcess
from twins.models import Twin

LINES = 1_000_000
PEAK_RSS_LIMIT_MIB = 300

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a million rows want PostgreSQL"),
    # The workers' memory at a million lines is the pipeline's, whatever the broker.
    once_per_database(),
]


def uploaded(caller, lines: Iterable[dict]):
    """An upload of the lines as JSON Lines, spooled through a file rather than held."""
    with tempfile.TemporaryFile() as content:
        for line in lines:
            content.write(json.dumps(line).encode() + b"\n")
        size = content.tell()
        content.seek(0)
        upload = services.upload_create(account=caller.account, created_by=caller.account_user)
        services.upload_store(
            handler=upload.handler, stream=content, content_length=size, content_type="application/x-ndjson"
        )
    return upload


def test_a_million_lines_run_with_the_workers_peak_memory_under_300_mib(caller):
    celery_app.control.purge()
    upload = uploaded(caller, ({"description": {"serial": number}} for number in range(LINES)))
    worker = WorkerProcess(concurrency=1, log_name="worker-million").start()
    memory = PeakMemory(worker.process.pid)
    try:
        batch, _ = services.batch_create(
            account=caller.account, user=caller.user, handler=str(upload.handler), operation="create_twin"
        )
        batch = wait_terminal(batch, timeout=900, worker=worker)
    finally:
        peak_mib = memory.stop()
        worker.discard()
    assert batch.status == BatchStatus.COMPLETED
    assert (batch.processed, batch.succeeded) == (LINES, LINES)
    assert Twin.objects.filter(account=caller.account).count() == LINES
    assert peak_mib < PEAK_RSS_LIMIT_MIB, f"the worker peaked at {peak_mib:.0f} MiB"


# A million in `make soak` (118 MiB); CI's 100,000 show the same flat memory in a tenth of the
# time (300,000: 118 MiB too).
MIXED_LINES = int(os.environ.get("MIXED_MEMORY_LINES", "100000"))


def test_a_large_mixed_file_is_validated_with_the_workers_memory_flat(caller):
    """Every name and reference of a large mixed file (a million lines in `make soak`) is
    checked (a dry run, so that validation alone is measured): the names live in the
    database, not in the worker."""
    celery_app.control.purge()
    upload = uploaded(caller, device_lines(MIXED_LINES // 3))
    worker = WorkerProcess(concurrency=1, log_name="worker-mixed-million").start()
    memory = PeakMemory(worker.process.pid)
    started = time.monotonic()
    try:
        batch, _ = services.batch_create(
            account=caller.account,
            user=caller.user,
            handler=str(upload.handler),
            operation="mixed",
            validate_only=True,
        )
        batch = wait_terminal(batch, timeout=900, worker=worker)
    finally:
        peak_mib = memory.stop()
        worker.discard()
    print(
        f"{MIXED_LINES // 3 * 3} mixed lines validated in {time.monotonic() - started:.1f} s,"
        f" peak {peak_mib:.0f} MiB"
    )
    assert batch.status == BatchStatus.COMPLETED, batch.failure_reason
    assert batch.summary["not_executed"] == MIXED_LINES // 3 * 3
    assert peak_mib < PEAK_RSS_LIMIT_MIB, f"the worker peaked at {peak_mib:.0f} MiB"

"""Time and order from the command-line client (`python -m batches.cli` in its own process,
against a live server): submitting with a schedule, a priority and parents, refusing bad input
before a byte is uploaded, and pausing and resuming."""

import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from batches.models import Batch, BatchStatus, Upload
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory

S = BatchStatus
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "twins.jsonl"
    path.write_bytes(jsonl([{"description": {"n": 1}}]))
    return path


def test_submit_with_a_schedule_a_priority_and_parents(cli, caller, source):
    first, second = BatchFactory(caller=caller, status=S.COMPLETED), BatchFactory(caller=caller)
    submitted = cli(
        "submit",
        str(source),
        "--operation",
        "create_twin",
        "--not-before",
        "2099-01-02T03:04:05+00:00",
        "--complete-within",
        "3600",
        "--priority",
        "8",
        "--after",
        str(first.uuid),
        "--after",
        f"{second.uuid}:terminal",
    )
    assert submitted.returncode == 0, submitted.stderr
    batch = Batch.objects.get(uuid=submitted.stdout.strip())
    assert batch.not_before == datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert time.time() + 3500 < batch.deadline_at.timestamp() < time.time() + 3700
    assert batch.priority == 8
    assert [(row.parent_id, row.require) for row in batch.requirements.order_by("pk")] == [
        (first.pk, "completed"),
        (second.pk, "terminal"),
    ]


def test_relative_times_are_from_now(cli, caller, source):
    before = time.time()
    submitted = cli(
        "submit", str(source), "--operation", "create_twin", "--not-before", "+600", "--deadline", "+7200"
    )
    assert submitted.returncode == 0, submitted.stderr
    batch = Batch.objects.get(uuid=submitted.stdout.strip())
    assert before + 600 <= batch.not_before.timestamp() <= time.time() + 600
    assert before + 7200 <= batch.deadline_at.timestamp() <= time.time() + 7200


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--not-before", "tomorrow"], "ISO 8601"),
        (["--not-before", "+soon"], "ISO 8601"),
        (["--deadline", "+-5"], "ISO 8601"),
        (["--complete-within", "0"], "above 0"),
        (["--complete-within", "60", "--deadline", "+60"], "not allowed with"),
        (["--priority", "10"], "1 to 9"),
        (["--priority", "five"], "1 to 9"),
        (["--after", "not-a-batch"], "batch id"),
        ([f"--after={uuid.uuid4()}:finished"], "REQUIRE"),
        (["--deadline", "2001-01-01T00:00:00Z"], "invalid_deadline"),
        ([f"--after={uuid.uuid4()}"], "not_found"),
    ],
    ids=[
        "words",
        "relative words",
        "negative",
        "zero seconds",
        "both deadlines",
        "priority 10",
        "priority word",
        "not a uuid",
        "unknown require",
        "past deadline",
        "unknown parent",
    ],
)
def test_bad_input_exits_2_before_uploading(cli, caller, source, flags, said):
    refused = cli("submit", str(source), "--operation", "create_twin", *flags)
    assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    assert not Upload.objects.exists() and not Batch.objects.exists()


def test_pause_and_resume(cli, caller):
    batch = BatchFactory(caller=caller, status=S.PROCESSING)
    paused = cli("pause", str(batch.uuid))
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["status"] == "paused"
    assert Batch.objects.get(pk=batch.pk).status == S.PAUSED
    resumed = cli("resume", str(batch.uuid))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "processing"

    new = BatchFactory(caller=caller)
    refused = cli("pause", str(new.uuid))
    assert refused.returncode == 2 and "batch_not_pausable" in refused.stderr

"""`batch status` and `batch summary` (the command-line client in its own process, against a
live server): why a batch waits, its place in the queue and since when it stalled; a batch's
totals, failed lines by subcode and its files' SHA-256, for a person or (--json) as the API
gives them."""

import json
import re
from datetime import timedelta

import pytest
from django.db.models import F
from django.test import override_settings
from django.utils import timezone

from batches.cli import local_time
from batches.models import Batch, BatchStatus
from batches.pipeline import maintenance
from batches.selectors import batch_summary
from tests.support.batch_files import updates
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import first_chunk_run, run_batch

S = BatchStatus
pytestmark = pytest.mark.django_db(transaction=True)


def fields(printed: str) -> dict[str, str]:
    """`name  value` lines, as `batch status` prints them."""
    return dict(line.split(None, 1) for line in printed.splitlines())


def test_status_says_why_a_new_batch_waits_and_its_place_in_the_queue(cli, caller):
    BatchFactory(caller=caller)
    second = BatchFactory(caller=caller)

    shown = cli("status", str(second.pk))
    assert shown.returncode == 0, shown.stderr
    printed = fields(shown.stdout)
    assert printed["batch"] == str(second.pk) and printed["status"] == "new"
    assert printed["progress"] == "0 lines so far: 0 succeeded, 0 failed"
    assert (
        printed["reason"]
        == "waiting_for_worker — Waiting for a worker: 1 of this account's batches start before it."
    )
    assert printed["queue"] == "place 2 in the account's queue (1 starts next)"
    assert "ends" not in printed and "stalled" not in printed

    raw = json.loads(cli("status", str(second.pk), "--json").stdout)
    assert raw["status_reason"] == "waiting_for_worker" and raw["queue"] == {"position": 2}


def test_status_says_since_when_a_batch_stalled(cli, caller):
    batch = BatchFactory(caller=caller, status=S.PROCESSING, total=10)
    stalled_at = timezone.now() - timedelta(minutes=5)
    # Test setup: its last progress that long ago; the sweep then records the stall.
    Batch.objects.filter(pk=batch.pk).update(heartbeat_at=stalled_at)
    assert maintenance.stalls_record() == 1

    printed = fields(cli("status", str(batch.pk)).stdout)
    assert printed["progress"] == "0 of 10 lines: 0 succeeded, 0 failed"
    assert printed["reason"].startswith("stalled — Stalled: no progress for 5 min")
    assert printed["stalled"] == f"since {local_time(stalled_at.timestamp())} (5 min ago)"


@override_settings(BATCH_CHUNK_LINES=5)
def test_status_says_when_a_running_batch_should_end(cli, caller):
    batch = BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 10))
    first_chunk_run(batch)
    # Test setup: processing started 30 s ago, so 5 lines in 30 s leave 5 lines for 30 s more.
    Batch.objects.filter(pk=batch.pk).update(updated_at=F("updated_at") - timedelta(seconds=30))

    printed = fields(cli("status", str(batch.pk)).stdout)
    assert printed["progress"] == "5 of 10 lines: 5 succeeded, 0 failed"
    assert re.fullmatch(r"\d\d:\d\d \S+ \(in (2\d|30) s\), at 0\.2 lines/s", printed["ends"]), printed


@override_settings(BATCH_CHUNK_LINES=5)
def test_summary_prints_totals_subcodes_and_the_files_hashes(cli, caller):
    finished = run_batch(
        BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 12, bad_every=5))
    )
    results, errors = batch_summary(finished)["results"], batch_summary(finished)["errors"]

    shown = cli("summary", str(finished.pk))
    assert shown.returncode == 0, shown.stderr
    bytes_width = max(len("bytes"), len(str(results["bytes"])))
    assert shown.stdout.splitlines() == [
        "lines         12",
        "succeeded     10",
        "failed        2",
        "not executed  0",
        "",
        "subcode    lines  first lines",
        "not_found      2  5, 10",
        "",
        f"file     lines  {'bytes':>{bytes_width}}  sha256",
        f"results     12  {results['bytes']:>{bytes_width}}  {results['sha256']}",
        f"errors       2  {errors['bytes']:>{bytes_width}}  {errors['sha256']}",
    ]

    raw = json.loads(cli("summary", str(finished.pk), "--json").stdout)
    assert raw == caller.client.get(f"/batches/{finished.pk}").json()["summary"]
    assert raw["results"] == results and raw["by_subcode"] == {"not_found": {"count": 2, "lines": [5, 10]}}


def test_summary_of_a_batch_that_has_not_started(cli, caller):
    batch = BatchFactory(caller=caller)
    shown = cli("summary", str(batch.pk))
    assert shown.returncode == 0 and shown.stdout == ""
    assert shown.stderr.strip() == "no summary yet: the batch is new"
    assert json.loads(cli("summary", str(batch.pk), "--json").stdout) is None

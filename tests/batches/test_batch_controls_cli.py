"""The batch controls from the command-line client (`python -m batches.cli` in its own process,
against a live server): submitting with an error budget or as a dry run, and saving the lines
a running batch has run so far."""

import json
import uuid

import pytest
from django.test import override_settings

from batches.models import Batch, BatchStatus
from tests.support.batch_files import jsonl
from tests.support.inline_pipeline import first_chunk_run, run_batch
from twins.services import twins_create

S = BatchStatus
pytestmark = pytest.mark.django_db(transaction=True)


def update_file(caller, tmp_path, count: int, bad: int = 0):
    twins = twins_create(account=caller.account, descriptions=[{"n": 0}] * count)
    lines = [
        {"twin": str(uuid.uuid4()) if number == bad else str(twin.uuid), "description": {"n": number}}
        for number, twin in enumerate(twins, start=1)
    ]
    path = tmp_path / "updates.jsonl"
    path.write_bytes(jsonl(lines))
    return path


def test_submit_with_an_error_budget_or_as_a_dry_run(cli, caller, tmp_path):
    source = update_file(caller, tmp_path, 6, bad=2)
    counted = cli("submit", str(source), "--operation", "update_twin", "--error-budget", "0")
    assert counted.returncode == 0, counted.stderr
    stopped = run_batch(Batch.objects.get(pk=counted.stdout.strip()))
    assert stopped.error_budget == {"max_failed": 0}
    assert stopped.status == S.CANCELLED and stopped.failure_reason.startswith("error_budget_exceeded")

    ratio = cli(
        "submit", str(source), "--operation", "update_twin", "--error-budget", "5%", "--validate-only"
    )
    assert ratio.returncode == 0, ratio.stderr
    dry = Batch.objects.get(pk=ratio.stdout.strip())
    assert dry.error_budget == {"max_failed_ratio": 0.05, "min_lines": 100} and dry.validate_only
    assert run_batch(dry).status == S.COMPLETED
    shown = json.loads(cli("wait", str(dry.pk)).stdout)
    assert shown["validate_only"] is True and shown["progress"]["processed"] == 0

    refused = cli("submit", str(source), "--operation", "update_twin", "--error-budget", "a few")
    assert refused.returncode == 2 and "N or P%" in refused.stderr
    refused = cli("submit", str(source), "--operation", "update_twin", "--error-budget", "150%")
    assert refused.returncode == 2 and "invalid_error_budget" in refused.stderr


@override_settings(BATCH_CHUNK_LINES=3)
def test_download_partial_saves_the_lines_run_so_far(cli, caller, tmp_path):
    source = update_file(caller, tmp_path, 9)
    batch = Batch.objects.get(pk=cli("submit", str(source), "--operation", "update_twin").stdout.strip())
    first_chunk_run(batch)

    target = tmp_path / "partial.jsonl"
    refused = cli("download", str(batch.pk), "-o", str(target))
    assert refused.returncode == 2 and "--partial" in refused.stderr
    saved = cli("download", str(batch.pk), "--partial", "-o", str(target))
    assert saved.returncode == 0, saved.stderr
    assert [json.loads(line)["line"] for line in target.read_text().splitlines()] == [1, 2, 3]

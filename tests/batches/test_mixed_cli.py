"""`batch submit FILE --operation mixed` (contract §16), the command-line client in its own
process against a live server; the batch's lines then run here in a worker's stead."""

from pathlib import Path

import pytest
from django.conf import settings

from batches.models import Batch, BatchStatus
from tests.support.inline_pipeline import read_results, run_batch

pytestmark = pytest.mark.django_db(transaction=True)
EXAMPLE = Path(settings.BASE_DIR) / "examples" / "mixed.jsonl"


def test_submit_a_mixed_file_and_read_its_summary(cli):
    submitted = cli("submit", str(EXAMPLE), "--operation", "mixed")
    assert submitted.returncode == 0, submitted.stderr
    batch = run_batch(Batch.objects.get(pk=submitted.stdout.strip()))
    assert (batch.operation, batch.status) == ("mixed", BatchStatus.COMPLETED)
    assert [line["status"] for line in read_results(batch.results_file)] == [201] * 6 + [200] * 2
    summary = cli("summary", str(batch.pk))
    assert summary.returncode == 0 and "succeeded     8\nfailed        0\n" in summary.stdout, summary.stdout


def test_a_misspelt_operation_is_refused_before_the_file_is_uploaded(cli):
    refused = cli("submit", str(EXAMPLE), "--operation", "mixd")
    assert refused.returncode == 2 and "operation_unknown" in refused.stderr
    assert not Batch.objects.exists()

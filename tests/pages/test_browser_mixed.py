"""The upload form's `mixed` operation (contract §16) in a real browser: its example shows the
lines of a twin and what refers to it, and the batch it makes runs each line's operation."""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from batches.models import Batch, BatchStatus
from tests.support.browser_pages import screenshot, sign_in
from tests.support.inline_pipeline import read_results, run_batch
from twins.examples import MIXED_EXAMPLE_LINES

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
DETAIL_URL = re.compile(r".*/ui/batches/(?P<batch>[0-9a-f-]{36})$")
EXAMPLE = Path(settings.BASE_DIR) / "examples" / "mixed.jsonl"


def test_the_form_offers_a_mixed_batch_with_its_example_and_runs_it(page, caller):
    sign_in(page, caller)
    page.goto("/ui/batches/new")
    page.get_by_label("Batch file").set_input_files(EXAMPLE)
    page.get_by_label("Operation").select_option("mixed")
    expect(page.locator("#operation-example")).to_have_text(
        "\n".join(json.dumps(line) for line in MIXED_EXAMPLE_LINES)
    )
    screenshot(page, "form-mixed")
    page.get_by_role("button", name="Upload and start").click()
    page.wait_for_url(DETAIL_URL)
    batch = run_batch(Batch.objects.get(pk=DETAIL_URL.match(page.url)["batch"]))
    assert (batch.operation, batch.status) == ("mixed", BatchStatus.COMPLETED)
    assert [line["status"] for line in read_results(batch.results_file)] == [201] * 6 + [200] * 2
    page.reload()
    expect(page.get_by_text("mixed", exact=True).first).to_be_visible()

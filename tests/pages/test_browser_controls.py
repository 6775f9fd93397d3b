"""The batch controls in a real browser: the upload form's failure limit and "only validate"
box, "Run for real" after a dry run, the detail page's link to the lines a running batch has
run so far, and its cancel button (which asks first).
The pipeline is driven from the test (no worker), so each state the page shows is one the test
chose: a worker runs a thousand lines between two of the page's polls."""

import json
import re
import uuid

import pytest
from django.test import override_settings
from playwright.sync_api import expect

from batches.models import Batch, BatchStatus
from batches.pipeline import chunks
from tests.support.batch_files import jsonl
from tests.support.browser_pages import screenshot, sign_in
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import first_chunk_run, run_batch
from twins.models import Twin
from twins.services import twins_create

S = BatchStatus
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
DETAIL_URL = re.compile(r".*/ui/batches/(?P<batch>[0-9a-f-]{36})$")


def test_the_form_sends_a_failure_limit_and_a_dry_run(page, caller, tmp_path):
    batch_file = tmp_path / "twins.jsonl"
    batch_file.write_bytes(jsonl({"description": {"serial": n}} for n in range(30)))
    sign_in(page, caller)
    page.goto("/ui/batches/new")
    page.get_by_label("Batch file").set_input_files(batch_file)
    page.get_by_label("Operation").select_option("create_twin")

    page.get_by_label("Failure limit").fill("a few")
    page.get_by_role("button", name="Upload and start").click()
    expect(page.locator("#upload-error")).to_contain_text("The failure limit is a number of lines")
    assert not Batch.objects.exists()

    page.get_by_label("Failure limit").fill("5%")
    page.get_by_label("Only validate").check()
    screenshot(page, "form-controls")
    page.get_by_role("button", name="Upload and start").click()
    page.wait_for_url(DETAIL_URL)
    batch = Batch.objects.get(pk=DETAIL_URL.match(page.url)["batch"])
    assert batch.validate_only is True
    assert batch.error_budget == {"max_failed_ratio": 0.05, "min_lines": 100}
    assert batch.batch_dict == {"name": "twins.jsonl"}, "the file's name labels the batch"

    run_batch(batch)
    expect(page.locator("#batch-status")).to_have_attribute("data-status", "completed", timeout=15_000)
    expect(page.locator("#progress-text")).to_have_text("Dry run: 30 lines checked, none run.")
    page.reload()
    expect(page.locator("#validate-only")).to_contain_text("Only validated")
    expect(page.locator("#progress-text")).to_have_text("Dry run: 30 lines checked, none run.")
    expect(page.locator("#error-budget")).to_contain_text("more than 5 % of the lines run failed")
    assert not Twin.objects.exists()
    expect(page.locator("#batch-status")).to_have_text("dry run")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download results").click()
    results = [json.loads(line) for line in download.value.path().read_text().splitlines()]
    assert [line["line"] for line in results] == list(range(1, 31))
    assert {line["error"]["subcode"] for line in results} == {"validate_only"}

    page.get_by_role("button", name="Run for real").click()
    page.wait_for_url(DETAIL_URL)
    real = Batch.objects.get(pk=DETAIL_URL.match(page.url)["batch"])
    assert real.retry_of_id == batch.pk and real.validate_only is False
    assert real.batch_dict == {"name": "twins.jsonl"}
    assert run_batch(real).status == S.COMPLETED
    assert Twin.objects.filter(account=caller.account).count() == 30
    expect(page.locator("#batch-status")).to_have_text("completed", timeout=15_000)


@override_settings(BATCH_CHUNK_LINES=5)
def test_a_running_batch_offers_the_lines_run_so_far(page, caller):
    twins = twins_create(account=caller.account, descriptions=[{"n": 0}] * 20)
    lines = [
        {"twin": str(uuid.uuid4()) if number == 3 else str(twin.uuid), "description": {"n": number}}
        for number, twin in enumerate(twins, start=1)
    ]
    batch = BatchFactory(caller=caller, operation="update_twin", content=jsonl(lines))
    runner = first_chunk_run(batch)
    assert chunks.chunk_claim_and_run(batch.pk)

    sign_in(page, caller)
    page.goto(f"/ui/batches/{batch.pk}")
    link = page.get_by_role("link", name="Download lines run so far")
    expect(link).to_be_visible()
    expect(page.get_by_role("link", name="Download results")).to_be_hidden()
    screenshot(page, "detail-partial")
    with page.expect_download() as download:
        link.click()
    partial = [json.loads(line) for line in download.value.path().read_text().splitlines()]
    assert [line["line"] for line in partial] == list(range(1, 11))
    assert partial[2]["status"] == 404 and partial[0]["status"] == 200

    runner.drain()
    expect(page.locator("#batch-status")).to_have_attribute("data-status", "completed", timeout=15_000)
    expect(link).to_be_hidden()
    expect(page.get_by_role("link", name="Download results")).to_be_visible()


@override_settings(BATCH_CHUNK_LINES=5)
def test_cancel_a_running_batch_from_its_page(page, caller):
    lines = 40
    batch = BatchFactory(
        caller=caller,
        content=jsonl({"description": {"serial": n}} for n in range(lines)),
    )
    runner = first_chunk_run(batch)

    sign_in(page, caller)
    page.goto(f"/ui/batches/{batch.pk}")
    expect(page.locator("#batch-status")).to_have_attribute("data-status", "processing")
    expect(page.locator("#progress-text")).to_contain_text(f"5 of {lines} lines")
    screenshot(page, "detail-processing")

    # Cancel asks first: "no" leaves the batch running.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Cancel batch").click()
    expect(page.locator("#batch-status")).to_have_attribute("data-status", "processing")
    assert Batch.objects.get(pk=batch.pk).status == S.PROCESSING

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel batch").click()
    cancelling = page.get_by_role("status").filter(has_text="is cancelling")
    expect(cancelling).to_be_visible()
    assert Batch.objects.get(pk=batch.pk).status == S.CANCEL
    runner.advance(batch)
    runner.drain()
    expect(page.locator("#batch-status")).to_have_attribute("data-status", "cancelled", timeout=15_000)
    expect(page.get_by_role("button", name="Cancel batch")).to_be_hidden()
    expect(page.get_by_role("link", name="Download results")).to_be_visible()
    expect(cancelling).to_have_count(0)
    expect(page.get_by_role("link", name="Download failed and never-run lines")).to_be_visible()

    cancelled = Batch.objects.get(pk=batch.pk)
    assert (cancelled.status, cancelled.processed) == (S.CANCELLED, 5)
    assert Twin.objects.filter(account=caller.account).count() == 5

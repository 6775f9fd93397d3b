"""The pages in a real browser: sign in, upload with the hash computed by Web Crypto, follow a
batch live to completion, download its results, and see refusals as the API words them. A real
Celery worker runs the pipeline, as in `make run`. (Cancelling from the page is in
test_browser_controls.py: a batch stays in processing there until the test moves it.)"""

import hashlib
import json
import re

import pytest
from playwright.sync_api import expect

from batches.models import Batch
from tests.support.batch_files import twin_lines
from tests.support.browser_pages import screenshot, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
DETAIL_URL = re.compile(r".*/ui/batches/(?P<batch>[0-9a-f-]{36})$")


def upload_through_form(page, path, operation="create_twin") -> None:
    page.goto("/ui/batches/new")
    page.get_by_label("Batch file").set_input_files(path)
    page.get_by_label("Operation").select_option(operation)


def opened_batch(page) -> Batch:
    page.wait_for_url(DETAIL_URL)
    return Batch.objects.get(pk=DETAIL_URL.match(page.url)["batch"])


def test_upload_follow_progress_to_completed_and_download_results(page, caller, worker, tmp_path):
    content = twin_lines(1000)
    batch_file = tmp_path / "twins.jsonl"
    batch_file.write_bytes(content)
    sign_in(page, caller)

    upload_through_form(page, batch_file)
    page.get_by_label("Key").fill("source")
    page.get_by_label("Value").fill("browser test")
    screenshot(page, "form")
    page.get_by_role("button", name="Upload and start").click()
    batch = opened_batch(page)
    # Set once on this document: still there at the end proves the page never reloaded.
    page.evaluate("window.sameDocument = true")

    status = page.locator("#batch-status")
    expect(status).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(page.locator("#progress-text")).to_contain_text("1000 of 1000 lines (100 %)")
    # The summary is put in place once the batch ended, without a reload.
    expect(page.locator("#summary-total")).to_have_text("1000")
    assert page.eval_on_selector("#batch-progress", "bar => [bar.value, bar.max]") == [1000, 1000]
    assert page.evaluate("window.sameDocument") is True
    history = page.locator("#batch-history li .badge").all_inner_texts()
    assert history[0] == "new" and history[-1] == "completed"
    screenshot(page, "detail")

    stored = Batch.objects.get(pk=batch.pk)
    assert stored.hash == hashlib.sha256(content).hexdigest(), "the browser's SHA-256 was sent and matched"
    assert stored.batch_dict == {"source": "browser test", "name": "twins.jsonl"}

    with page.expect_download() as download:
        page.get_by_role("link", name="Download results").click()
    results = [json.loads(line) for line in download.value.path().read_text().splitlines()]
    assert len(results) == 1000
    assert {result["status"] for result in results} == {201}

    page.goto("/ui/batches")
    row = page.locator(f"tr[data-batch='{batch.pk}']")
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row.locator(".percent")).to_have_text("100 %")
    screenshot(page, "list")


def test_a_hash_that_does_not_match_the_file_is_shown_as_such(page, caller, worker, tmp_path):
    batch_file = tmp_path / "twins.jsonl"
    batch_file.write_bytes(twin_lines(10))
    sign_in(page, caller)

    # The file changes between hashing and upload, as a corrupted transfer would: the browser
    # sends the hash of other bytes than it uploads.
    def send_another_hash(route):
        body = json.loads(route.request.post_data)
        body["hash"] = hashlib.sha256(b"other bytes").hexdigest()
        route.continue_(post_data=json.dumps(body))

    page.route(re.compile(r".*/batches$"), send_another_hash)
    upload_through_form(page, batch_file)
    page.get_by_role("button", name="Upload and start").click()
    opened_batch(page)

    expect(page.locator("#batch-status")).to_have_text("hash mismatch", timeout=30_000)
    expect(page.locator("#failure-reason")).to_contain_text("does not match the file's SHA-256")
    screenshot(page, "detail-hash-mismatch")
    expect(page.get_by_role("link", name="Download results")).to_be_hidden()


def test_the_form_offers_only_operations_the_role_allows(page, make_caller):
    limited = make_caller(statement={"effect": "deny", "actions": ["update_twin", "terminate_twin"]})
    sign_in(page, limited)
    page.goto("/ui/batches/new")
    offered = page.locator("#operation option").evaluate_all("options => options.map(o => o.value)")
    assert "create_twin" in offered
    assert "update_twin" not in offered and "terminate_twin" not in offered


def test_an_api_refusal_is_shown_with_its_description(page, caller, tmp_path):
    batch_file = tmp_path / "twins.jsonl"
    batch_file.write_bytes(twin_lines(3))
    sign_in(page, caller)
    upload_through_form(page, batch_file)
    page.get_by_label("Key").fill("Not-A-Key")
    page.get_by_label("Value").fill("1")
    page.get_by_role("button", name="Upload and start").click()

    alert = page.locator("#upload-error")
    expect(alert).to_contain_text("Create batch: batch_dict: batch_dict key 'Not-A-Key' must match")
    assert not Batch.objects.filter(account=caller.account).exists()

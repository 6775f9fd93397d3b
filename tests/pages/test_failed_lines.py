"""A batch's page lists its failed lines where the user looks: the first 100 inline (line,
field, reason), how many more, and a link to the full report. A real worker runs the batches."""

import json
import re
import uuid

import pytest
from playwright.sync_api import expect

from batchsite.celery import app as celery_app
from tests.pages.test_browser import opened_batch, upload_through_form
from tests.support.browser_pages import screenshot, sign_in
from tests.support.worker_processes import WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(django_db_setup):
    """A worker of its own for each test: a worker process caches content types and
    permissions by id, and the database is emptied and filled again between these tests."""
    celery_app.control.purge()
    process = WorkerProcess(log_name="worker-failed-lines").start()
    yield process
    process.discard()


def write_lines(path, bodies) -> None:
    path.write_text("".join(json.dumps(body) + "\n" for body in bodies))


def test_a_validation_failure_lists_its_first_100_bad_lines(page, caller, worker, tmp_path):
    # Line 1 is valid; lines 2..121 give a description that is not an object.
    batch_file = tmp_path / "twins.jsonl"
    write_lines(batch_file, [{"description": {"n": 0}}] + [{"description": n} for n in range(120)])
    sign_in(page, caller)
    upload_through_form(page, batch_file)
    page.get_by_role("button", name="Upload and start").click()
    opened_batch(page)

    status = page.locator("#batch-status")
    expect(status).to_have_attribute("data-status", "validation_failed", timeout=30_000)
    section = page.locator("#failed-lines")
    expect(section).to_be_visible()
    rows = section.locator("tbody tr")
    expect(rows).to_have_count(100)
    first = rows.first.locator("td").all_inner_texts()
    assert first[0] == "2" and first[1] == "400" and first[2] == "description"
    assert "invalid_input" in first[3]
    assert rows.last.locator("td").first.inner_text() == "101"
    expect(page.locator("#failed-more")).to_contain_text("20 more lines in the full report.")
    report = page.locator("#full-report")
    expect(report).to_have_attribute("href", re.compile(r"/downloads/"))
    screenshot(page, "detail-validation-failed")

    with page.expect_download() as download:
        report.click()
    listed = download.value.path().read_text().splitlines()
    assert [json.loads(line)["line"] for line in listed] == list(range(2, 122))


def test_a_completed_batch_lists_its_first_100_failed_lines(page, caller, worker, tmp_path):
    # 103 lines naming twins that do not exist: each one runs and answers 404.
    batch_file = tmp_path / "reads.jsonl"
    write_lines(batch_file, [{"twin": str(uuid.uuid4())} for _ in range(103)])
    sign_in(page, caller)
    upload_through_form(page, batch_file, operation="get_twin")
    page.get_by_role("button", name="Upload and start").click()
    opened_batch(page)

    expect(page.locator("#batch-status")).to_have_attribute("data-status", "completed", timeout=60_000)
    # The page loads itself again once the batch ends with failures, to list them.
    rows = page.locator("#failed-lines tbody tr")
    expect(rows).to_have_count(100, timeout=15_000)
    first = rows.first.locator("td").all_inner_texts()
    assert first[:3] == ["1", "404", "—"]
    assert "not_found" in first[3]
    expect(page.locator("#failed-more")).to_contain_text("3 more lines in the full report.")
    expect(page.locator("#full-report")).to_be_visible()
    screenshot(page, "detail-completed-with-failures")


def test_a_batch_without_failures_lists_nothing(page, caller, worker, tmp_path):
    batch_file = tmp_path / "twins.jsonl"
    write_lines(batch_file, [{"description": {"n": n}} for n in range(5)])
    sign_in(page, caller)
    upload_through_form(page, batch_file)
    page.get_by_role("button", name="Upload and start").click()
    opened_batch(page)
    expect(page.locator("#batch-status")).to_have_attribute("data-status", "completed", timeout=30_000)
    page.reload()
    assert page.locator("#failed-lines").count() == 0, page.locator("#failed-lines").inner_text()

"""Time and order in a real browser: the upload form's schedule, priority and dependency, and
the detail page's Pause and Resume, whose buttons follow the batch's status as it changes. The
pipeline is driven from the test (no worker), so a batch stays processing as long as needed."""

import re
import uuid

import pytest
from django.test import override_settings
from playwright.sync_api import expect

from batches import services
from batches.models import Batch, BatchStatus
from tests.support.batch_files import jsonl
from tests.support.browser_pages import screenshot, sign_in
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import first_chunk_run

S = BatchStatus
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
DETAIL_URL = re.compile(r".*/ui/batches/(?P<batch>[0-9a-f-]{36})$")


@override_settings(BATCH_CHUNK_LINES=5)
def test_pause_a_running_batch_from_its_page_and_resume_it(page, caller):
    lines = 20
    batch = BatchFactory(caller=caller, content=jsonl({"description": {"serial": n}} for n in range(lines)))
    runner = first_chunk_run(batch)

    sign_in(page, caller)
    page.goto(f"/ui/batches/{batch.pk}")
    status = page.locator("#batch-status")
    pause = page.get_by_role("button", name="Pause")
    resume = page.get_by_role("button", name="Resume")
    expect(status).to_have_attribute("data-status", "processing")
    expect(pause).to_be_visible()
    expect(resume).to_be_hidden()

    pause.click()
    expect(page.get_by_role("status").filter(has_text="is paused")).to_be_visible()
    expect(status).to_have_attribute("data-status", "paused")
    expect(status).to_have_text("paused")
    expect(page.locator("#waiting-reason")).to_have_attribute("data-reason", "paused")
    expect(pause).to_be_hidden()
    expect(resume).to_be_visible()
    expect(page.get_by_role("button", name="Cancel batch")).to_be_visible()
    expect(page.get_by_role("link", name="Download lines run so far")).to_be_visible()
    screenshot(page, "detail-paused")
    assert Batch.objects.get(pk=batch.pk).status == S.PAUSED

    resume.click()
    expect(status).to_have_attribute("data-status", "processing")
    expect(resume).to_be_hidden()
    expect(pause).to_be_visible()
    # Live, no reload: the buttons follow a status changed elsewhere (the API, the admin).
    services.batch_pause(batch=batch)
    expect(resume).to_be_visible()
    expect(pause).to_be_hidden()
    expect(status).to_have_text("paused")
    services.batch_resume(batch=batch)
    expect(pause).to_be_visible()
    expect(resume).to_be_hidden()

    runner.advance(batch)
    runner.drain()
    expect(status).to_have_attribute("data-status", "completed", timeout=15_000)
    expect(pause).to_be_hidden()
    expect(resume).to_be_hidden()
    finished = Batch.objects.get(pk=batch.pk)
    assert (finished.processed, finished.succeeded) == (lines, lines)
    moves = list(finished.history.values_list("to_status", flat=True))
    assert moves[-8:-2] == [S.PROCESSING, S.PAUSED, S.PROCESSING, S.PAUSED, S.PROCESSING, S.PROCESSED]


def test_the_form_sends_the_schedule_priority_and_dependency(page, caller, tmp_path):
    parent = BatchFactory(caller=caller, status=S.COMPLETED)
    batch_file = tmp_path / "later.jsonl"
    batch_file.write_bytes(jsonl({"description": {"serial": n}} for n in range(3)))
    sign_in(page, caller)
    page.goto("/ui/batches/new")
    page.get_by_label("Batch file").set_input_files(batch_file)
    page.get_by_label("Start not before").fill("2031-05-06T07:08:09")
    page.get_by_label("Deadline").fill("2031-05-07T00:00:00")
    page.get_by_label("Priority").select_option("7")
    page.get_by_label("After batch").fill(str(uuid.uuid4()))
    page.get_by_label("It must have").select_option("terminal")

    page.get_by_role("button", name="Upload and start").click()
    expect(page.locator("#upload-error")).to_contain_text("Create batch:")
    assert Batch.objects.count() == 1, "an unknown parent creates nothing"

    page.get_by_label("After batch").fill(str(parent.pk))
    page.get_by_role("button", name="Upload and start").click()
    page.wait_for_url(DETAIL_URL)
    batch = Batch.objects.get(pk=DETAIL_URL.match(page.url)["batch"])
    # The browser's time zone reads the typed times; the server keeps the instants.
    local = "new Date('{}').getTime() / 1000"
    assert batch.not_before.timestamp() == page.evaluate(local.format("2031-05-06T07:08:09"))
    assert batch.deadline_at.timestamp() == page.evaluate(local.format("2031-05-07T00:00:00"))
    assert batch.priority == 7
    assert list(batch.requirements.values_list("parent_uuid", "require")) == [(parent.pk, "terminal")]
    expect(page.locator("#priority")).to_contain_text("7")
    expect(page.locator("#after")).to_contain_text(f"{parent.pk} (completed) must be ended, however it ended")
    expect(page.locator("#not-before")).to_be_visible()

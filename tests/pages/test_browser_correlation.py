"""The upload form's "ID field" and "Echo fields" inputs (contract §15) in a real browser: sent
with the batch, refused on the form, and shown on the batch's page."""

import re

import pytest
from playwright.sync_api import expect

from batches.models import Batch
from tests.support.batch_files import jsonl
from tests.support.browser_pages import screenshot, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
DETAIL_URL = re.compile(r".*/ui/batches/(?P<batch>[0-9a-f-]{36})$")


def test_the_form_sends_the_id_field_and_the_echoed_fields(page, caller, tmp_path):
    batch_file = tmp_path / "twins.jsonl"
    batch_file.write_bytes(jsonl({"ref": f"r-{n}", "note": n, "description": {"n": n}} for n in range(3)))
    sign_in(page, caller)
    page.goto("/ui/batches/new")
    page.get_by_label("Batch file").set_input_files(batch_file)
    page.get_by_label("Operation").select_option("create_twin")
    page.get_by_label("ID field").fill("ref")

    page.get_by_label("Echo fields").fill("note, note")
    page.get_by_role("button", name="Upload and start").click()
    expect(page.locator("#upload-error")).to_contain_text(
        "Create batch: echo_fields: echo_fields names a field twice."
    )
    assert not Batch.objects.exists()

    page.get_by_label("Echo fields").fill(" note , description ")
    screenshot(page, "form-correlation")
    page.get_by_role("button", name="Upload and start").click()
    page.wait_for_url(DETAIL_URL)
    batch = Batch.objects.get(pk=DETAIL_URL.match(page.url)["batch"])
    assert (batch.id_field, batch.echo_fields) == ("ref", ["note", "description"])
    expect(page.locator("#id-field")).to_have_text("ref")
    expect(page.locator("#echo-fields")).to_have_text("note, description")


def test_a_batch_without_them_shows_neither(page, caller, tmp_path):
    batch_file = tmp_path / "twins.jsonl"
    batch_file.write_bytes(jsonl({"description": {"n": n}} for n in range(2)))
    sign_in(page, caller)
    page.goto("/ui/batches/new")
    page.get_by_label("Batch file").set_input_files(batch_file)
    page.get_by_label("Operation").select_option("create_twin")
    page.get_by_role("button", name="Upload and start").click()
    page.wait_for_url(DETAIL_URL)
    batch = Batch.objects.get(pk=DETAIL_URL.match(page.url)["batch"])
    assert (batch.id_field, batch.echo_fields) == ("", [])
    expect(page.locator("#validate-only, #id-field, #echo-fields")).to_have_count(0)

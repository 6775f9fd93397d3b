"""Pages that tell the truth, in a real browser: the list's names, line counts and badges that
tell a clean run, a run with failures, a dry run, a cancel and a stop by the failure limit
apart; the reason in plain words; Retry after failures; confirmation before delete; and the
list and detail pages on a 400 px wide screen. The pipeline runs in this process (no worker):
each batch is in the state the test put it in."""

import hashlib
import json
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone
from playwright.sync_api import expect

from batches.models import Batch, BatchStatus
from batches.pipeline import maintenance
from tests.support.batch_files import jsonl, updates
from tests.support.browser_pages import screenshot, sign_in
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import run_batch, stop_after_first_chunk
from twins.examples import EXAMPLE_LINES

S = BatchStatus
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
DETAIL_URL = re.compile(r".*/ui/batches/(?P<batch>[0-9a-f-]{36})$")
NARROW = {"width": 400, "height": 800}


def finished(caller, name: str | None, content: bytes, **controls) -> Batch:
    batch_dict = {"name": name} if name else None
    return run_batch(
        BatchFactory(
            caller=caller, operation="update_twin", content=content, batch_dict=batch_dict, **controls
        )
    )


@pytest.fixture
def outcomes(caller) -> dict[str, Batch]:
    with override_settings(BATCH_CHUNK_LINES=5, BATCH_CANCEL_CHECK_LINES=5):
        made = {
            "clean": finished(caller, "clean.jsonl", updates(caller, 4)),
            "failures": finished(caller, "april.jsonl", updates(caller, 10, bad_every=5)),
            "dry": finished(caller, "dry.jsonl", updates(caller, 6), validate_only=True),
            "budget": finished(
                caller,
                "budget.jsonl",
                updates(caller, 20, bad_every=2),
                error_budget={"max_failed_ratio": 0.1, "min_lines": 10},
            ),
            "cancelled": stop_after_first_chunk(
                BatchFactory(
                    caller=caller,
                    content=jsonl({"description": {"n": n}} for n in range(20)),
                )
            ),
        }
    assert [batch.status for batch in made.values()] == [S.COMPLETED] * 3 + [S.CANCELLED] * 2
    return made


def no_sideways_scroll(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide on a {widths[1]} px screen"


def test_the_list_names_counts_and_tells_outcomes_apart(page, caller, outcomes):
    sign_in(page, caller)
    page.goto("/ui/batches")

    def row_of(key):
        return page.locator(f"tr[data-batch='{outcomes[key].pk}']")

    expected = {
        "clean": ("clean.jsonl", "completed", "4", "0"),
        "failures": ("april.jsonl", "completed with failures", "10", "2"),
        "dry": ("dry.jsonl", "dry run", "6", "none run"),
        "budget": ("budget.jsonl", "stopped: too many failures", "20", str(outcomes["budget"].failed)),
        "cancelled": (str(outcomes["cancelled"].pk)[:12], "cancelled", "20", "0"),
    }
    for key, (name, badge, lines, failed) in expected.items():
        row = row_of(key)
        expect(row.locator("td.name a")).to_contain_text(name)
        expect(row.locator(".badge")).to_have_text(badge)
        expect(row.locator("td.lines")).to_have_text(lines)
        expect(row.locator("td.failed")).to_have_text(failed)
    tones = {key: row_of(key).locator(".badge").get_attribute("class") for key in expected}
    assert len(set(tones.values())) == len(tones), f"badges that look alike: {tones}"
    expect(row_of("dry").locator("progress")).to_have_count(0)
    screenshot(page, "list-outcomes")

    page.set_viewport_size(NARROW)
    page.reload()
    no_sideways_scroll(page)
    # One card per batch: the column heads are only for screen readers.
    assert page.locator("table.batches thead").bounding_box()["height"] <= 1
    for key in expected:
        box = row_of(key).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"], (key, box)
    expect(row_of("failures").locator("td.failed")).to_be_visible()
    screenshot(page, "list-narrow")


def test_a_stopped_batch_says_why_in_plain_words_and_fits_a_narrow_screen(page, caller, outcomes):
    stopped = outcomes["budget"]
    page.set_viewport_size(NARROW)
    sign_in(page, caller)
    page.goto(f"/ui/batches/{stopped.pk}")

    expect(page.locator("#batch-status")).to_have_text("stopped: too many failures")
    expect(page.locator("#reason-words")).to_have_text(
        re.compile(r"^stopped: \d+ of \d+ lines failed, more than your 10 % limit$")
    )
    expect(page.locator("#reason-subcode")).to_have_text("error_budget_exceeded")
    expect(page.locator("#failed-lines tbody tr").first).to_be_visible()
    no_sideways_scroll(page)
    screenshot(page, "detail-narrow")


def test_the_page_says_why_a_batch_waits_and_sums_up_a_finished_one(page, caller, outcomes):
    waiting = BatchFactory(caller=caller)  # No worker here: it stays new.
    sign_in(page, caller)
    page.goto(f"/ui/batches/{waiting.pk}")
    expect(page.locator("#waiting-reason")).to_have_text("waiting for worker")
    expect(page.locator("#waiting-description")).to_have_text(re.compile(r"\w+ \w+"))
    expect(page.locator("#queue-line")).to_have_text("Place in your account's queue: 1 (1 starts next).")
    expect(page.locator("#eta-line")).to_be_hidden()
    expect(page.locator("#batch-summary")).to_have_count(0)
    screenshot(page, "detail-waiting")

    failed = outcomes["failures"]
    page.goto(f"/ui/batches/{failed.pk}")
    expect(page.locator("#batch-waiting")).to_be_hidden()
    summary = page.locator("#batch-summary")
    expect(summary.locator("dl.totals dd")).to_have_text(["10", "8", "2", "0"])
    expect(summary.locator("#summary-subcodes tbody td")).to_have_text(["not_found", "2", "5, 10"])
    with page.expect_download() as download:
        page.get_by_role("link", name="Download results").click()
    results = download.value.path().read_bytes()
    expect(summary.locator("#summary-files tbody tr").first.locator("td")).to_have_text(
        ["Results", "10", str(len(results)), hashlib.sha256(results).hexdigest()]
    )
    screenshot(page, "detail-summary")


def test_a_stall_shows_in_the_browsers_time_zone(browser, live_server, caller):
    batch = BatchFactory(caller=caller, status=S.PROCESSING, total=10)
    stalled_at = timezone.now() - timedelta(minutes=5)
    # Test setup: its last progress that long ago; the sweep then records the stall.
    Batch.objects.filter(pk=batch.pk).update(heartbeat_at=stalled_at)
    assert maintenance.stalls_record() == 1
    context = browser.new_context(base_url=live_server.url, timezone_id="Asia/Kolkata", locale="en-GB")
    page = context.new_page()
    sign_in(page, caller)
    page.goto(f"/ui/batches/{batch.pk}")

    expect(page.locator("#waiting-reason")).to_have_text("stalled")
    local = stalled_at.astimezone(ZoneInfo("Asia/Kolkata"))
    expect(page.locator("#stalled-line")).to_have_text(
        re.compile(rf"^No progress since\s+{local:%H:%M}\s+\(5 min ago\)\.$")
    )
    expect(page.locator("#stalled-time")).to_have_attribute("title", f"{stalled_at:%Y-%m-%d %H:%M} UTC")
    context.close()


def test_retry_from_the_page_runs_only_the_failed_lines(page, caller, outcomes):
    failed = outcomes["failures"]
    sign_in(page, caller)
    page.goto(f"/ui/batches/{failed.pk}")
    expect(page.locator("#batch-status")).to_have_text("completed with failures")
    screenshot(page, "detail-retry")

    page.get_by_role("button", name="Retry").click()
    page.wait_for_url(DETAIL_URL)
    retry = Batch.objects.get(pk=DETAIL_URL.match(page.url)["batch"])
    assert retry.pk != failed.pk and retry.retry_of_id == failed.pk
    assert run_batch(retry).total == 2

    page.goto(f"/ui/batches/{failed.pk}")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    expect(page.locator("#retried-as a")).to_have_text(str(retry.pk))


def test_a_cancelled_batch_offers_its_never_run_lines(page, caller, outcomes):
    cancelled = outcomes["cancelled"]
    sign_in(page, caller)
    page.goto(f"/ui/batches/{cancelled.pk}")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download failed and never-run lines").click()
    listed = [json.loads(line) for line in download.value.path().read_text().splitlines()]
    assert [line["line"] for line in listed] == list(range(6, 21))
    assert {line["error"]["subcode"] for line in listed} == {"not_executed"}
    expect(page.locator("#next-step")).to_contain_text("15 never ran")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()


def test_delete_asks_first(page, caller, outcomes):
    clean = outcomes["clean"]
    sign_in(page, caller)
    page.goto(f"/ui/batches/{clean.pk}")
    questions = []

    def say_no(dialog):
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", say_no)
    page.get_by_role("button", name="Delete batch").click()
    expect(page.locator("#batch-status")).to_have_text("completed")
    assert questions and "cannot be undone" in questions[0]
    assert Batch.objects.get(pk=clean.pk).status == S.COMPLETED

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete batch").click()
    page.wait_for_url("**/ui/batches")
    assert Batch.objects.get(pk=clean.pk).status == S.DELETING


def test_the_form_shows_an_example_line_of_the_chosen_operation(page, caller):
    sign_in(page, caller)
    page.goto("/ui/batches/new")
    example = page.locator("#operation-example")
    for operation in ("update_twin", "create_twin", "add_twin_ledger_entry"):
        page.get_by_label("Operation").select_option(operation)
        expect(example).to_have_text(json.dumps(EXAMPLE_LINES[operation]))

"""The pages' server side without a browser: who sees and may do what, paging, refusals, and
the API answering the pages' session with its CSRF token."""

import hashlib
import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.storage import default_storage
from django.db.models import F
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from batches.models import Batch, BatchStatus
from batches.pipeline import maintenance
from tests.support.batch_files import updates
from tests.support.factories import BatchFactory, moves_to
from tests.support.inline_pipeline import first_chunk_run, run_batch

S = BatchStatus
pytestmark = pytest.mark.django_db
LIST = reverse("batch_list_page")


def signed_in(caller) -> Client:
    client = Client()
    client.force_login(caller.user)
    return client


def rows(response) -> list:
    assert response.status_code == 200, response.content[:500]
    return [row.batch.pk for row in response.context["rows"]]


def test_pages_need_a_signed_in_user(client):
    response = client.get(LIST)
    assert response.status_code == 302
    assert response["Location"].startswith("/ui/login")


def test_members_see_their_account_filtered_and_paged(caller, stranger):
    mine = [BatchFactory(caller=caller, status=S.COMPLETED) for _ in range(27)]
    running = BatchFactory(caller=caller, status=S.PROCESSING, operation="update_twin")
    BatchFactory(caller=stranger, status=S.COMPLETED)
    client = signed_in(caller)

    newest_first = list(
        Batch.objects.filter(account=caller.account)
        .order_by("-created_at", "-uuid")
        .values_list("pk", flat=True)
    )
    assert set(newest_first) == {running.pk, *(batch.pk for batch in mine)}

    first = client.get(LIST)
    assert rows(first) == newest_first[:25]
    second = client.get(first.context["next_page"])
    assert rows(second) == newest_first[25:]
    assert second.context["next_page"] is None
    assert rows(client.get(LIST, {"status": "processing"})) == [running.pk]
    assert rows(client.get(LIST, {"operation": "update_twin"})) == [running.pk]


def test_staff_see_every_account_filter_by_account_and_cancel_any(admin_user, caller, stranger):
    mine, theirs = BatchFactory(caller=caller), BatchFactory(caller=stranger, status=S.PROCESSING)
    client = Client()
    client.force_login(admin_user)

    assert set(rows(client.get(LIST))) == {mine.pk, theirs.pk}
    assert rows(client.get(LIST, {"account": str(stranger.account.pk)})) == [theirs.pk]
    page = client.get(reverse("batch_page", args=[theirs.pk]))
    assert page.status_code == 200 and stranger.account.name in page.content.decode()

    client.post(reverse("batch_cancel_page", args=[theirs.pk]), {"next": LIST})
    assert Batch.objects.get(pk=theirs.pk).status == S.CANCEL
    assert theirs.history.last().note == "cancelled by staff member admin", "not the client's"


def staff_signed_in(*codenames: str) -> Client:
    """A staff user of no account, with these of the batches app's model permissions."""
    staff = User.objects.create_user(username="night-shift", is_staff=True)
    permissions = Permission.objects.filter(content_type__app_label="batches", codename__in=codenames)
    staff.user_permissions.add(*permissions)
    client = Client()
    client.force_login(staff)
    return client


def test_staff_without_model_permissions_see_download_and_cancel_nothing(caller):
    """The pages follow the admin's model permissions, as the admin does."""
    theirs = BatchFactory(caller=caller, status=S.PROCESSING)
    client = staff_signed_in()
    for response in (
        client.get(LIST),
        client.get(reverse("batch_page", args=[theirs.pk])),
        client.get(reverse("batch_state", args=[theirs.pk])),
        client.post(reverse("batch_cancel_page", args=[theirs.pk])),
    ):
        assert response.status_code == 403, response.content[:300]
    assert b"/downloads/" not in client.get(reverse("batch_page", args=[theirs.pk])).content
    assert Batch.objects.get(pk=theirs.pk).status == S.PROCESSING


def test_staff_who_may_only_view_batches_see_them_but_cannot_cancel(caller):
    theirs = BatchFactory(caller=caller, status=S.PROCESSING)
    client = staff_signed_in("view_batch")
    assert rows(client.get(LIST)) == [theirs.pk]
    assert client.get(reverse("batch_state", args=[theirs.pk])).json()["can_cancel"] is False
    assert client.post(reverse("batch_cancel_page", args=[theirs.pk])).status_code == 403
    assert Batch.objects.get(pk=theirs.pk).status == S.PROCESSING


def test_staff_who_may_change_batches_cancel_them_in_their_own_name(caller):
    theirs = BatchFactory(caller=caller, status=S.PROCESSING)
    client = staff_signed_in("view_batch", "change_batch")
    client.post(reverse("batch_cancel_page", args=[theirs.pk]))
    assert Batch.objects.get(pk=theirs.pk).status == S.CANCEL
    assert theirs.history.last().note == "cancelled by staff member night-shift"


def test_another_accounts_batch_is_not_found(caller, stranger):
    theirs = BatchFactory(caller=stranger)
    client = signed_in(caller)
    for response in (
        client.get(reverse("batch_page", args=[theirs.pk])),
        client.post(reverse("batch_cancel_page", args=[theirs.pk])),
        client.get(reverse("batch_state", args=[theirs.pk])),
    ):
        assert response.status_code == 404
    assert Batch.objects.get(pk=theirs.pk).status == S.NEW


def test_a_role_without_the_action_is_refused_with_its_name(make_caller):
    reader = make_caller(statement={"effect": "allow", "actions": ["get_batches", "get_batch"]})
    batch = BatchFactory(caller=make_caller(account=reader.account))
    client = signed_in(reader)

    assert "New batch" not in client.get(LIST).content.decode()
    refused = client.get(reverse("batch_new_page"))
    assert refused.status_code == 403
    assert "create_upload_url and create_batch" in refused.content.decode()
    assert client.post(reverse("batch_cancel_page", args=[batch.pk])).status_code == 403
    assert Batch.objects.get(pk=batch.pk).status == S.NEW

    nothing = make_caller(statement={"effect": "allow", "actions": []})
    assert "does not allow get_batches" in signed_in(nothing).get(LIST).content.decode()


def test_cancelling_a_finished_batch_says_why_and_changes_nothing(caller):
    batch = BatchFactory(caller=caller, status=S.COMPLETED)
    response = signed_in(caller).post(reverse("batch_cancel_page", args=[batch.pk]), follow=True)
    assert "has finished (completed); nothing is left to cancel" in response.content.decode()
    assert Batch.objects.get(pk=batch.pk).status == S.COMPLETED


def test_delete_from_the_page_starts_deletion(caller):
    batch = BatchFactory(caller=caller, status=S.COMPLETED)
    response = signed_in(caller).post(reverse("batch_delete_page", args=[batch.pk]), follow=True)
    assert "is being deleted" in response.content.decode()
    assert Batch.objects.get(pk=batch.pk).status == S.DELETING


def test_the_state_the_detail_page_polls(caller):
    batch = BatchFactory(caller=caller, status=S.PROCESSING)
    state = signed_in(caller).get(reverse("batch_state", args=[batch.pk])).json()
    assert state["batch"]["batch"] == str(batch.pk)
    assert state["status_label"] == "processing" and state["can_cancel"] is True
    assert [change["status"] for change in state["history"]] == [S.NEW, *moves_to(S.PROCESSING)]
    parts = ("results", "errors", "partial")
    assert state["downloads"] == {name: None for part in parts for name in (part, f"{part}_csv")}
    assert state["waiting"]["reason"] == "running" and "summary_html" not in state


def test_the_api_takes_the_pages_session_only_with_its_csrf_token(caller):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(caller.user)
    # As the upload form sends it (the API reads JSON bodies only).
    without = browser.post("/cache", content_type="application/json")
    assert without.status_code == 403
    assert "CSRF" in without.json()["description"]

    token = browser.get(reverse("batch_new_page")).context["csrf_token"]
    issued = browser.post("/cache", content_type="application/json", headers={"X-CSRFToken": str(token)})
    assert issued.status_code == 201, issued.content


def words(response) -> str:
    """The page's text as a person reads it: tags dropped, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def text_of(response, element_id: str) -> str:
    """An element's text as a person reads it (an element holding no element of its kind)."""
    pattern = rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>'
    element = re.search(pattern, response.content.decode(), re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", element[2])).split())


def stored_sha256(name: str) -> str:
    with default_storage.open(name, "rb") as stored:
        return hashlib.sha256(stored.read()).hexdigest()


def test_a_waiting_batch_says_why_and_its_place_in_the_queue(caller):
    BatchFactory(caller=caller)
    second = BatchFactory(caller=caller)
    response = signed_in(caller).get(reverse("batch_page", args=[second.pk]))

    waiting = response.context["state"]["waiting"]
    assert waiting["reason"] == "waiting_for_worker" and waiting["queue_position"] == 2
    shown = words(response)
    assert f"waiting for worker {waiting['description']}" in shown
    assert text_of(response, "queue-line") == "Place in your account's queue: 2 (1 starts next)."
    assert "Summary" not in shown, "no summary before it ends"


def test_a_stalled_batch_says_since_when(caller):
    batch = BatchFactory(caller=caller, status=S.PROCESSING, total=10)
    stalled_at = timezone.now() - timedelta(minutes=5)
    # Test setup: its last progress that long ago; the sweep then records the stall.
    Batch.objects.filter(pk=batch.pk).update(heartbeat_at=stalled_at)
    assert maintenance.stalls_record() == 1
    state = signed_in(caller).get(reverse("batch_state", args=[batch.pk])).json()

    assert state["waiting"]["reason"] == "stalled" and state["waiting"]["tone"] == "failed"
    assert state["waiting"]["stalled_since"] == {
        "at": round(stalled_at.timestamp(), 3),
        "clock": f"{stalled_at:%H:%M} UTC",
        "relative": "5 min ago",
    }
    response = signed_in(caller).get(reverse("batch_page", args=[batch.pk]))
    assert text_of(response, "stalled-line") == f"No progress since {stalled_at:%H:%M} UTC (5 min ago)."
    assert text_of(response, "waiting-description") == state["waiting"]["description"]


@override_settings(BATCH_CHUNK_LINES=5)
def test_a_running_batch_says_when_it_should_end(caller):
    batch = BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 10))
    first_chunk_run(batch)
    # Test setup: processing started 30 s ago, so 5 lines in 30 s leave 5 lines for 30 s more.
    Batch.objects.filter(pk=batch.pk).update(updated_at=F("updated_at") - timedelta(seconds=30))
    response = signed_in(caller).get(reverse("batch_page", args=[batch.pk]))

    assert response.context["state"]["waiting"]["reason"] == "running"
    assert re.fullmatch(
        r"Should end at \d\d:\d\d UTC \(in (29|30) s\), at 0\.2 lines/s\.", text_of(response, "eta-line")
    ), text_of(response, "eta-line")


@override_settings(BATCH_CHUNK_LINES=5)
def test_a_finished_batch_shows_its_summary(caller):
    batch = run_batch(
        BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 12, bad_every=5))
    )
    assert batch.status == S.COMPLETED and batch.failed == 2
    response = signed_in(caller).get(reverse("batch_page", args=[batch.pk]))

    shown = words(response)
    assert "Summary Lines 12 Succeeded 10 Failed 2 Not executed 0" in shown
    assert "Subcode Lines First lines not_found 2 5, 10" in shown
    results, errors = stored_sha256(batch.results_file), stored_sha256(batch.errors_file)
    assert f"Results 12 {default_storage.size(batch.results_file)} {results}" in shown
    assert f"Errors only 2 {default_storage.size(batch.errors_file)} {errors}" in shown
    assert response.context["state"]["waiting"] is None
    # Each file also as CSV, from a link beside it that serves the same lines.
    for part, lines in (("results", 12), ("errors", 2)):
        link = re.search(rf'<a id="download-{part}-csv"[^>]*>', response.content.decode())[0]
        assert "hidden" not in link and f'aria-label="CSV of the {part}' in link
        served = signed_in(caller).get(html.unescape(re.search(r'href="([^"]+)"', link)[1]))
        assert served["Content-Type"] == "text/csv; charset=utf-8"
        rows = b"".join(served.streaming_content).decode().splitlines()
        assert rows[0] == "line,id,status,subcode,description,result" and len(rows) == 1 + lines

    # The page that followed the batch live puts the same section in place once it ends.
    state = signed_in(caller).get(reverse("batch_state", args=[batch.pk])).json()
    assert state["summary_html"].strip().startswith('<section id="batch-summary"')
    assert results in state["summary_html"] and errors in state["summary_html"]

"""The pages' side of time and order (docs/contract.md, section 14) without a browser: the upload
form's fields, the detail page's schedule, priority and dependencies, and Pause and Resume."""

from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse

from batches.models import Batch, BatchDependency, BatchStatus
from tests.support.factories import BatchFactory

S = BatchStatus
pytestmark = pytest.mark.django_db


def signed_in(caller) -> Client:
    client = Client()
    client.force_login(caller.user)
    return client


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_upload_form_offers_time_and_order(caller):
    page = signed_in(caller).get(reverse("batch_new_page")).content.decode()
    assert 'type="datetime-local" id="not-before"' in page
    assert 'type="datetime-local" id="deadline"' in page
    assert '<option value="5" selected>5 (default)</option>' in page
    assert '<option value="9">9 (highest)</option>' in page
    assert 'id="after-batch"' in page
    for require in ("completed", "no_failures", "terminal"):
        assert f'<option value="{require}">' in page


def test_the_detail_page_shows_the_schedule_priority_and_what_it_waits_for(caller):
    parent = BatchFactory(caller=caller, status=S.PROCESSING)
    gone = "6f1d6a52-0000-4000-8000-000000000001"
    batch = BatchFactory(caller=caller)
    Batch.objects.filter(pk=batch.pk).update(
        not_before=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),
        deadline_at=datetime(2031, 5, 7, 0, 0, tzinfo=UTC),
        priority=8,
    )
    BatchDependency.objects.create(batch=batch, parent=parent, parent_uuid=parent.pk, require="no_failures")
    BatchDependency.objects.create(batch=batch, parent=None, parent_uuid=gone, require="terminal")

    page = signed_in(caller).get(reverse("batch_page", args=[batch.pk])).content.decode()
    assert "2031-05-06 07:08:09 UTC" in page
    assert "2031-05-07 00:00:00 UTC" in page
    assert '<dd id="priority">8 <span' in page
    assert f'href="{reverse("batch_page", args=[parent.pk])}">{parent.pk}</a> (processing)' in page
    assert "must be completed with no failed line" in page
    assert f"{gone}</span> (deleted)" in page and "must be ended, however it ended" in page


def test_a_plain_batch_shows_no_schedule_and_the_default_priority(caller):
    page = (
        signed_in(caller).get(reverse("batch_page", args=[BatchFactory(caller=caller).pk])).content.decode()
    )
    assert 'id="not-before"' not in page and 'id="deadline"' not in page and 'id="after"' not in page
    assert '<dd id="priority">5 (default)' in page


def test_pause_then_resume_from_the_page(caller):
    batch = BatchFactory(caller=caller, status=S.PROCESSING, total=40, processed=10, succeeded=10)
    client = signed_in(caller)
    state_url = reverse("batch_state", args=[batch.pk])
    running = client.get(state_url).json()
    assert (running["can_pause"], running["can_resume"], running["can_cancel"]) == (True, False, True)
    page = client.get(reverse("batch_page", args=[batch.pk])).content.decode()
    assert f'id="pause-form" method="post" action="{reverse("batch_pause_page", args=[batch.pk])}">' in page
    assert f'action="{reverse("batch_resume_page", args=[batch.pk])}" hidden>' in page

    response = client.post(reverse("batch_pause_page", args=[batch.pk]), follow=True)
    assert Batch.objects.get(pk=batch.pk).status == S.PAUSED
    assert any("is paused" in message for message in shown_messages(response))
    paused = client.get(state_url).json()
    assert (paused["can_pause"], paused["can_resume"], paused["can_cancel"]) == (False, True, True)
    assert paused["status_label"] == "paused" and paused["status_tone"] == "stopped"
    assert paused["waiting"]["reason"] == "paused"

    response = client.post(reverse("batch_resume_page", args=[batch.pk]), follow=True)
    assert Batch.objects.get(pk=batch.pk).status == S.PROCESSING
    assert any("resumes" in message for message in shown_messages(response))
    assert client.get(state_url).json()["can_pause"] is True


def test_pausing_or_resuming_where_the_status_does_not_allow_it_says_why(caller):
    finished = BatchFactory(caller=caller, status=S.COMPLETED)
    client = signed_in(caller)
    assert client.get(reverse("batch_state", args=[finished.pk])).json()["can_pause"] is False

    paused = client.post(reverse("batch_pause_page", args=[finished.pk]), follow=True)
    assert paused.status_code == 200
    assert any(
        message.startswith(f"Batch {finished.pk} was not paused:") for message in shown_messages(paused)
    )
    running = BatchFactory(caller=caller, status=S.PROCESSING)
    resumed = client.post(reverse("batch_resume_page", args=[running.pk]), follow=True)
    assert resumed.status_code == 200
    assert [Batch.objects.get(pk=batch.pk).status for batch in (finished, running)] == [
        S.COMPLETED,
        S.PROCESSING,
    ]


def test_pause_needs_update_batch_and_the_batch_of_ones_account(make_caller, stranger):
    reader = make_caller(statement={"effect": "allow", "actions": ["get_batches", "get_batch"]})
    mine = BatchFactory(caller=make_caller(account=reader.account), status=S.PROCESSING)
    theirs = BatchFactory(caller=stranger, status=S.PROCESSING)
    client = signed_in(reader)

    assert client.get(reverse("batch_state", args=[mine.pk])).json()["can_pause"] is False
    assert client.post(reverse("batch_pause_page", args=[mine.pk])).status_code == 403
    assert client.post(reverse("batch_pause_page", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("batch_pause_page", args=[mine.pk])).status_code == 405
    assert [Batch.objects.get(pk=batch.pk).status for batch in (mine, theirs)] == [S.PROCESSING] * 2

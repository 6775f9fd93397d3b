"""The batch admin as staff use it: filters, search, a list whose query count does not grow
with the rows, the detail page, and cancel through the service (action and button)."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from batches.models import Batch, BatchDependency, BatchStatus
from batches.selectors import batch_summary, batch_waiting
from tests.support.batch_api import create_batch, uploaded_handler
from tests.support.batch_files import updates
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import run_batch

S = BatchStatus
pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:batches_batch_changelist")


def listed(response) -> set:
    assert response.status_code == 200, response.content[:500]
    return {batch.pk for batch in response.context["cl"].result_list}


def test_filters_list_only_the_matching_batches(admin_client, caller, stranger):
    done = [
        BatchFactory(caller=caller, status=S.COMPLETED),
        BatchFactory(caller=stranger, status=S.COMPLETED),
    ]
    running = BatchFactory(caller=caller, status=S.PROCESSING)
    other_operation = BatchFactory(caller=caller, status=S.COMPLETED, operation="update_twin")

    assert listed(admin_client.get(CHANGELIST, {"status__exact": "completed"})) == {
        *(batch.pk for batch in done),
        other_operation.pk,
    }
    assert listed(admin_client.get(CHANGELIST, {"status__exact": "processing"})) == {running.pk}
    assert listed(admin_client.get(CHANGELIST, {"operation": "update_twin"})) == {other_operation.pk}
    assert listed(admin_client.get(CHANGELIST, {"account__uuid__exact": str(stranger.account.pk)})) == {
        done[1].pk
    }


def test_search_by_batch_id_creator_and_batch_dict(admin_client, caller, stranger):
    labelled = BatchFactory(caller=caller, batch_dict={"customer": "Northwind Traders"})
    theirs = BatchFactory(caller=stranger)

    assert listed(admin_client.get(CHANGELIST, {"q": str(theirs.pk)})) == {theirs.pk}
    assert listed(admin_client.get(CHANGELIST, {"q": "northwind"})) == {labelled.pk}
    assert listed(admin_client.get(CHANGELIST, {"q": caller.account_user.name})) == {labelled.pk}
    assert listed(admin_client.get(CHANGELIST, {"q": str(stranger.account_user.pk)})) == {theirs.pk}


def test_the_list_makes_the_same_queries_for_5_or_60_batches(admin_client, make_caller):
    callers = [make_caller() for _ in range(3)]
    for n in range(5):
        BatchFactory(caller=callers[n % 3], status=S.PROCESSING, total=100, processed=n, succeeded=n)
    admin_client.get(CHANGELIST)  # Warms per-process caches (content types, sessions).
    with CaptureQueriesContext(connection) as few:
        assert len(listed(admin_client.get(CHANGELIST))) == 5
    for n in range(55):
        BatchFactory(caller=callers[n % 3], status=S.COMPLETED, total=10, processed=10, succeeded=10)
    with CaptureQueriesContext(connection) as many:
        assert len(listed(admin_client.get(CHANGELIST))) == 50
    assert len(many) == len(few), [query["sql"] for query in many.captured_queries]


def test_the_cancel_action_cancels_active_batches_and_reports_terminal_ones(admin_client, caller):
    active = [BatchFactory(caller=caller), BatchFactory(caller=caller, status=S.PROCESSING)]
    finished = [
        BatchFactory(caller=caller, status=S.COMPLETED),
        BatchFactory(caller=caller, status=S.HASH_MISMATCH),
    ]

    response = admin_client.post(
        CHANGELIST,
        {"action": "cancel_selected", "_selected_action": [str(batch.pk) for batch in active + finished]},
        follow=True,
    )

    assert [Batch.objects.get(pk=batch.pk).status for batch in active] == [S.CANCEL, S.CANCEL]
    assert {batch.history.last().note for batch in active} == {"cancelled by staff member admin"}
    assert [Batch.objects.get(pk=batch.pk).status for batch in finished] == [S.COMPLETED, S.HASH_MISMATCH]
    shown = [str(message) for message in response.context["messages"]]
    assert any("Cancelling 2 batch(es)" in message for message in shown), shown
    assert any(
        message.startswith("2 batch(es) left as they were") and "has finished (completed)" in message
        for message in shown
    ), shown


def test_the_detail_page_shows_progress_history_and_links_and_cancels(admin_client, caller):
    batch = BatchFactory(
        caller=caller,
        status=S.PROCESSING,
        total=200,
        processed=50,
        succeeded=49,
        failed=1,
        hash="a" * 64,
        batch_dict={"source": "nightly"},
        input_file=f"batches/{caller.account.pk}/x/input",
    )
    change_url = reverse("admin:batches_batch_change", args=[batch.pk])

    page = admin_client.get(change_url).content.decode()
    assert "25 %: 50 of 200 lines processed, 49 succeeded, 1 failed" in page
    assert "validating → processing" in page  # the status history inline
    assert "a" * 64 in page and "nightly" in page
    assert "/downloads/" in page and "input file" in page
    assert "Cancel batch" in page

    admin_client.post(reverse("admin:batches_batch_cancel", args=[batch.pk]))
    assert Batch.objects.get(pk=batch.pk).status == S.CANCEL
    assert batch.history.last().note == "cancelled by staff member admin", (
        "a staff cancel is not the client's"
    )
    completed = BatchFactory(caller=caller, status=S.COMPLETED)
    assert (
        "Cancel batch"
        not in admin_client.get(reverse("admin:batches_batch_change", args=[completed.pk])).content.decode()
    )


def test_the_cancel_button_reports_a_finished_batch_unchanged(admin_client, caller):
    batch = BatchFactory(caller=caller, status=S.COMPLETED)
    response = admin_client.post(reverse("admin:batches_batch_cancel", args=[batch.pk]), follow=True)
    assert Batch.objects.get(pk=batch.pk).status == S.COMPLETED
    assert any("was not cancelled" in str(message) for message in response.context["messages"])


def test_a_user_who_is_not_staff_cannot_reach_the_admin(client, caller):
    client.force_login(caller.user)
    for url in (reverse("admin:index"), CHANGELIST):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_staff_with_only_view_permission_see_batches_but_cannot_cancel(client, caller):
    staff = caller.user
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_batch"))
    batch = BatchFactory(caller=caller)
    client.force_login(staff)

    assert listed(client.get(CHANGELIST)) == {batch.pk}
    client.post(reverse("admin:batches_batch_cancel", args=[batch.pk]))
    assert Batch.objects.get(pk=batch.pk).status == S.NEW


def column(response, name: str) -> dict[str, str]:
    """A column of the list as shown, by batch id."""
    assert response.status_code == 200, response.content[:500]
    cells = {}
    for row in re.findall(r"<tr>(.*?)</tr>", response.content.decode(), re.DOTALL):
        batch = re.search(r'class="field-uuid"><a [^>]*>([0-9a-f-]{36})</a>', row)
        if batch:
            cells[batch[1]] = re.search(rf'class="field-{name}[^"]*">(.*?)</td>', row, re.DOTALL)[1]
    return cells


def test_the_list_shows_why_each_batch_waits_and_filters_the_stalled(admin_client, caller):
    waiting = BatchFactory(caller=caller)
    running = BatchFactory(caller=caller, status=S.PROCESSING)
    stalled = BatchFactory(caller=caller, status=S.PROCESSING)
    # Test setup: its last progress five minutes ago, past BATCH_STALL_AFTER_SECONDS.
    Batch.objects.filter(pk=stalled.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    finished = BatchFactory(caller=caller, status=S.COMPLETED)

    assert column(admin_client.get(CHANGELIST), "status_reason") == {
        str(waiting.pk): "waiting for worker",
        str(running.pk): "running",
        str(stalled.pk): "stalled",
        str(finished.pk): "—",
    }
    assert column(admin_client.get(CHANGELIST, {"stalled": "yes"}), "status_reason") == {
        str(stalled.pk): "stalled"
    }
    # Each agrees with the batch object the API gives.
    for batch in (waiting, running, stalled):
        assert (
            batch_waiting(Batch.objects.get(pk=batch.pk))["status_reason"]
            == {
                waiting.pk: "waiting_for_worker",
                running.pk: "running",
                stalled.pk: "stalled",
            }[batch.pk]
        )


@override_settings(BATCH_CHUNK_LINES=5)
def test_the_detail_page_shows_why_it_waits_and_the_summary(admin_client, caller):
    BatchFactory(caller=caller)
    second = BatchFactory(caller=caller)
    waiting = admin_client.get(reverse("admin:batches_batch_change", args=[second.pk])).content.decode()
    assert (
        "waiting_for_worker — Waiting for a worker: 1 of this account" in waiting
        and "place 2 in its account&#x27;s queue" in waiting
    )
    assert "none yet" in waiting, "no summary before a line ran"

    finished = run_batch(
        BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 12, bad_every=5))
    )
    summary = batch_summary(finished)
    page = admin_client.get(reverse("admin:batches_batch_change", args=[finished.pk])).content.decode()
    assert "12 lines: 10 succeeded, 2 failed, 0 not executed" in page
    assert "<td><code>not_found</code></td><td>2</td><td>5, 10</td>" in page
    assert summary["results"]["sha256"] in page and summary["errors"]["sha256"] in page
    assert "— (ended)" in page


def readonly_value(page: str, field: str) -> str:
    return re.search(rf'field-{field}">.*?<div class="readonly">(.*?)</div>', page, re.DOTALL)[1]


def test_the_detail_page_shows_the_id_field_and_the_echoed_fields_read_only(admin_client, caller):
    correlated = create_batch(
        caller, uploaded_handler(caller), id_field="ref", echo_fields=["description", "note"]
    ).json()["batch"]
    plain = create_batch(caller, uploaded_handler(caller)).json()["batch"]

    page = admin_client.get(reverse("admin:batches_batch_change", args=[correlated])).content.decode()
    assert readonly_value(page, "id_field_name") == "ref"
    assert readonly_value(page, "echo_fields_names") == "description, note"
    assert 'name="id_field"' not in page and 'name="echo_fields"' not in page
    page = admin_client.get(reverse("admin:batches_batch_change", args=[plain])).content.decode()
    assert readonly_value(page, "id_field_name") == readonly_value(page, "echo_fields_names") == "—"


def test_the_pause_and_resume_actions_report_each_batch(admin_client, caller):
    running = [BatchFactory(caller=caller, status=S.PROCESSING) for _ in range(2)]
    others = [BatchFactory(caller=caller), BatchFactory(caller=caller, status=S.COMPLETED)]
    selected = [str(batch.pk) for batch in running + others]

    paused = admin_client.post(
        CHANGELIST, {"action": "pause_selected", "_selected_action": selected}, follow=True
    )
    assert [Batch.objects.get(pk=batch.pk).status for batch in running + others] == [
        S.PAUSED,
        S.PAUSED,
        S.NEW,
        S.COMPLETED,
    ]
    shown = [str(message) for message in paused.context["messages"]]
    assert any(
        message.startswith("Paused (running lines finish") and "2 batch(es)" in message for message in shown
    )
    refused = [message for message in shown if message.startswith("2 batch(es) left as they were")]
    assert refused and all(str(batch.pk) in refused[0] for batch in others), shown
    assert listed(admin_client.get(CHANGELIST, {"status__exact": "paused"})) == {
        batch.pk for batch in running
    }

    resumed = admin_client.post(
        CHANGELIST, {"action": "resume_selected", "_selected_action": selected}, follow=True
    )
    assert [Batch.objects.get(pk=batch.pk).status for batch in running] == [S.PROCESSING] * 2
    shown = [str(message) for message in resumed.context["messages"]]
    assert "Resumed 2 batch(es)." in shown, shown
    assert any(message.startswith("2 batch(es) left as they were") for message in shown), shown


def test_staff_who_may_only_view_batches_are_not_offered_pause_or_resume(client, caller):
    staff = caller.user
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_batch"))
    batch = BatchFactory(caller=caller, status=S.PROCESSING)
    client.force_login(staff)

    page = client.get(CHANGELIST).content.decode()
    assert "pause_selected" not in page and "resume_selected" not in page
    client.post(CHANGELIST, {"action": "pause_selected", "_selected_action": [str(batch.pk)]})
    assert Batch.objects.get(pk=batch.pk).status == S.PROCESSING


def test_the_detail_page_shows_the_schedule_priority_and_dependencies(admin_client, caller):
    parent = BatchFactory(caller=caller, status=S.COMPLETED)
    batch = BatchFactory(caller=caller)
    Batch.objects.filter(pk=batch.pk).update(
        not_before=timezone.now() + timedelta(hours=1),
        deadline_at=timezone.now() + timedelta(hours=2),
        priority=9,
    )
    BatchDependency.objects.create(batch=batch, parent=parent, parent_uuid=parent.pk, require="completed")

    page = admin_client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()
    assert readonly_value(page, "priority") == "9"
    assert readonly_value(page, "after") == f"{parent.pk} must be completed (now completed)"
    assert readonly_value(page, "not_before") != "-" and readonly_value(page, "deadline_at") != "-"
    plain = admin_client.get(reverse("admin:batches_batch_change", args=[parent.pk])).content.decode()
    assert readonly_value(plain, "after") == "—"

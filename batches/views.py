"""The HTML pages for people who do not script (docs/contract.md, section 1): the batch list, the upload
form and the batch detail with live progress.

Members of an account see their account's batches as far as their role allows; every check
asks guardian, as the API does. Staff follow the admin's model permissions: with
`batches.view_batch` they see and download every account's batches, with
`batches.change_batch` (the admin's cancel permission) they may cancel any. The upload form
calls the JSON API from the browser (POST /cache, PUT to the URL, POST /batches) with the
session and its CSRF token, so the page refuses exactly what the API refuses.
"""

import json
from dataclasses import asdict, dataclass
from functools import partial, wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from batches import retry, selectors, services
from batches.links import batch_download_url, final_download_url
from batches.models import Batch, BatchStatus
from batches.page_sections import batch_page_sections
from batches.pipeline.mixed import MIXED, may_batch
from batches.serializers import BatchSerializer
from batches.statuses import CANCEL_REQUESTED, CANCELLABLE, TERMINAL, can_move
from batches.templatetags.batch_accounting import batch_summary_tables, batch_waiting_words
from batches.templatetags.batch_pages import (
    batch_name,
    clock_time,
    never_run,
    outcome,
    progress_percent,
    reason,
    status_label,
    status_tone,
)
from batchsite.clients import public_base_url
from batchsite.errors import ApplicationError, error_body
from batchsite.middleware import require_POST, require_safe
from batchsite.paging import InvalidCursor
from batchsite.timestamps import to_ts
from permissions.models import Account
from permissions.selectors import account_of
from twins.examples import EXAMPLE_LINES, MIXED_EXAMPLE_LINES
from twins.registry import batchable_operations

PAGE_SIZE = 25


@dataclass(frozen=True)
class Viewer:
    """The signed-in person and what they may do with batches."""

    user: Any
    account: Account | None

    @classmethod
    def of(cls, user) -> "Viewer":
        return cls(user=user, account=account_of(user))

    @property
    def sees_every_account(self) -> bool:
        return self.user.is_staff and self.user.has_perm("batches.view_batch")

    @property
    def cancels_every_account(self) -> bool:
        return self.user.is_staff and self.user.has_perm("batches.change_batch")

    def may(self, action: str) -> bool:
        return self.account is not None and self.user.has_perm(action, self.account)

    def owns(self, batch: Batch) -> bool:
        return self.account is not None and batch.account_id == self.account.pk

    def may_list(self) -> bool:
        return self.sees_every_account or self.may("get_batches")

    def may_upload(self) -> bool:
        return self.may("create_upload_url") and self.may("create_batch")

    def may_cancel(self, batch: Batch) -> bool:
        return (self.owns(batch) and self.may("update_batch")) or self.cancels_every_account

    def may_retry(self, batch: Batch) -> bool:
        """As POST /batches/{batch}/retry: create_batch, and the batch's operation to run it."""
        return (
            self.owns(batch)
            and self.may("create_batch")
            and self.account is not None
            and may_batch(self.user, batch.operation, self.account)
        )

    def may_delete(self, batch: Batch) -> bool:
        return self.owns(batch) and self.may("delete_batch")

    def allowed_operations(self) -> list[str]:
        """The operations the viewer may batch; `mixed` too when any (each of its lines'
        operations is checked against the role when it is validated)."""
        allowed = [operation.name for operation in batchable_operations() if self.may(operation.name)]
        return [*allowed, MIXED] if allowed else []

    def batch(self, batch_id) -> Batch:
        """The batch, if this viewer may see it; 404 otherwise, as the API answers."""
        if self.sees_every_account:
            batch = Batch.objects.select_related("account", "created_by").filter(pk=batch_id).first()
            if batch is None:
                raise Http404("No such batch.")
            return batch
        if not self.may("get_batch"):
            raise PermissionDenied("Your role does not allow get_batch.")
        return selectors.batch_get(account=self.account, batch_id=batch_id)


def page(view):
    """Signed in, with a Viewer; refusals rendered as a page rather than the API's JSON."""

    @wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        viewer = Viewer.of(request.user)
        if viewer.account is None and not viewer.sees_every_account:
            if viewer.user.is_staff:
                return refused(request, 403, "This staff user may not view batches (batches.view_batch).")
            return refused(request, 403, "This user belongs to no account.")
        try:
            return view(request, viewer, *args, **kwargs)
        except Http404 as error:
            return refused(request, 404, str(error) or "Not found.")
        except PermissionDenied as error:
            return refused(request, 403, str(error) or "Not allowed.")

    return wrapped


def refused(request, status: int, description: str):
    title = {403: "Not allowed", 404: "Not found"}[status]
    return render(request, "pages/refused.html", {"title": title, "description": description}, status=status)


# The list


class BatchFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *BatchStatus.choices])
    operation = forms.ChoiceField(required=False)
    account = forms.ModelChoiceField(
        required=False, queryset=Account.objects.all(), to_field_name="uuid", empty_label="Every account"
    )
    cursor = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, viewer: Viewer, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["operation"].choices = [("", "Any operation"), (MIXED, MIXED)] + [
            (operation.name, operation.name) for operation in batchable_operations()
        ]
        if not viewer.sees_every_account:
            del self.fields["account"]


@dataclass(frozen=True)
class BatchRow:
    batch: Batch
    percent: int | None
    cancellable: bool
    name: str


@require_safe
@page
def batch_list_page(request, viewer: Viewer):
    if not viewer.may_list():
        raise PermissionDenied("Your role does not allow get_batches.")
    form = BatchFilterForm(request.GET, viewer=viewer)
    # A filter value that is not offered is left out (and marked on the form); the rest apply.
    form.is_valid()
    query = form.cleaned_data

    listing = partial(
        selectors.batch_list,
        account=query.get("account") if viewer.sees_every_account else viewer.account,
        every_account=viewer.sees_every_account,
        status=query.get("status"),
        operation=query.get("operation"),
        limit=PAGE_SIZE,
        whole_rows=True,
    )
    try:
        listed = listing(cursor=query.get("cursor"))
    except InvalidCursor:
        # As a first visit: a stale or edited link still shows the list.
        listed = listing(cursor=None)

    next_query = request.GET.copy()
    next_query["cursor"] = listed.cursor or ""
    first_query = request.GET.copy()
    first_query.pop("cursor", None)
    return render(
        request,
        "pages/batch_list.html",
        {
            "viewer": viewer,
            "form": form,
            "rows": [
                BatchRow(
                    batch=batch,
                    percent=progress_percent(batch),
                    cancellable=batch.status in CANCELLABLE and viewer.may_cancel(batch),
                    name=batch_name(batch),
                )
                for batch in listed.batches
            ],
            "next_page": f"{request.path}?{next_query.urlencode()}" if next_query["cursor"] else None,
            "first_page": f"{request.path}?{first_query.urlencode()}" if query.get("cursor") else None,
            "here": request.get_full_path(),
        },
    )


# The upload form


@require_safe
@page
def batch_new_page(request, viewer: Viewer):
    if not viewer.may_upload():
        raise PermissionDenied(
            "Your role does not allow uploading batches (create_upload_url and create_batch)."
        )
    operations = viewer.allowed_operations()
    examples = {
        operation: json.dumps(EXAMPLE_LINES[operation])
        for operation in operations
        if operation in EXAMPLE_LINES
    }
    if MIXED in operations:
        examples[MIXED] = "\n".join(json.dumps(line) for line in MIXED_EXAMPLE_LINES)
    return render(
        request,
        "pages/batch_new.html",
        {
            "viewer": viewer,
            "operations": operations,
            "examples": examples,
            "first_example": examples.get(operations[0], "") if operations else "",
            "priorities": range(1, 10),
        },
    )


# The detail


def download_links(request, batch: Batch) -> dict[str, str | None]:
    """Signed URLs of the results and errors files, once the pipeline has written them; while
    lines run, of the lines run so far (`partial`); each as stored (JSON Lines) and as CSV
    (`<name>_csv`)."""
    base_url = public_base_url(request)
    # An errors file without failed or never-run lines would download empty.
    has_errors = batch.failed or (batch.status == BatchStatus.CANCELLED and never_run(batch) != 0)
    links = {}
    for format, suffix in (("json", ""), ("csv", "_csv")):
        results = batch_download_url(batch=batch, part="results", base_url=base_url, format=format)
        errors = (
            final_download_url(batch=batch, part="errors", base_url=base_url, format=format)
            if has_errors
            else None
        )
        links |= {
            f"partial{suffix}": results.url if results and results.partial and batch.processed else None,
            f"results{suffix}": results.url if results and not results.partial else None,
            f"errors{suffix}": errors.url if errors else None,
        }
    return links


def next_step(viewer: Viewer, batch: Batch) -> str | None:
    """What the page offers after the batch ended: "run_for_real" after a dry run, "retry" when
    lines failed or never ran; None when there is nothing to do or it was already done."""
    if batch.status not in retry.RETRYABLE or not batch.errors_file or not viewer.may_retry(batch):
        return None
    if retry.live_retry(batch) is not None:
        return None
    if batch.status == BatchStatus.COMPLETED and batch.validate_only:
        return "run_for_real"
    if batch.failed or (batch.status == BatchStatus.CANCELLED and never_run(batch) != 0):
        return "retry"
    return None


def batch_state(request, viewer: Viewer, batch: Batch) -> dict:
    """Everything the detail page shows that changes while the batch runs."""
    badge = outcome(batch)
    stopped_because = reason(batch)
    waiting = batch_waiting_words(batch)
    return {
        "batch": BatchSerializer(batch).data,
        "status_label": badge.label,
        "status_tone": badge.tone,
        "percent": progress_percent(batch),
        "terminal": batch.status in TERMINAL,
        "failure_reason": batch.failure_reason,
        "reason": {"subcode": stopped_because.subcode, "words": stopped_because.words}
        if stopped_because
        else None,
        "next_step": next_step(viewer, batch),
        "waiting": None if waiting is None else asdict(waiting),
        "updated": f"{batch.updated_at:%Y-%m-%d %H:%M:%S} UTC",
        "history": [
            {
                "status": change.to_status,
                "label": status_label(change.to_status),
                "tone": status_tone(change.to_status),
                "at": to_ts(change.at),
                "clock": clock_time(change.at),
                "note": change.note,
            }
            for change in batch.history.all()
        ],
        "downloads": download_links(request, batch),
        "can_cancel": batch.status in CANCELLABLE and viewer.may_cancel(batch),
        "can_pause": can_move(batch.status, BatchStatus.PAUSED) and viewer.may_cancel(batch),
        "can_resume": batch.status == BatchStatus.PAUSED and viewer.may_cancel(batch),
        "cancel_requested": batch.status in CANCEL_REQUESTED,
    }


@require_safe
@page
def batch_detail_page(request, viewer: Viewer, batch_id):
    batch = viewer.batch(batch_id)
    state = batch_state(request, viewer, batch)
    return render(
        request,
        "pages/batch_detail.html",
        {
            **batch_page_sections(batch),
            "viewer": viewer,
            "batch": batch,
            "state": state,
            "history": batch.history.all(),
            "requirements": batch.requirements.select_related("parent"),
            "may_delete": viewer.may_delete(batch),
            "failed_lines": selectors.batch_failed_lines(batch=batch),
            "full_report": state["downloads"]["errors"] or state["downloads"]["results"],
            "retried_as": retry.live_retry(batch),
            "unrun": never_run(batch) if batch.status == BatchStatus.CANCELLED else None,
            "summary": batch_summary_tables(batch) if batch.status in TERMINAL else None,
            # A callback URL's query may hold the receiver's key: only for who manages webhooks.
            "show_callback_urls": viewer.sees_every_account or viewer.may("get_webhook_subscriptions"),
        },
    )


@require_safe
@login_required
def batch_state_json(request, batch_id):
    """What the detail page polls every second. Not the API's GET /batches/{batch}: staff
    follow other accounts' batches too, and the page needs the history and download links."""
    viewer = Viewer.of(request.user)
    try:
        batch = viewer.batch(batch_id)
    except Http404:
        return JsonResponse(
            error_body(status_code=404, subcode="not_found", description="The batch is gone."), status=404
        )
    except PermissionDenied as error:
        return JsonResponse(
            error_body(status_code=403, subcode="action_not_allowed", description=str(error)), status=403
        )
    state = batch_state(request, viewer, batch)
    if state["terminal"]:
        # Drawn by the server, once: the page puts it in place when the batch ends.
        summary = batch_summary_tables(batch)
        state["summary_html"] = (
            render_to_string("pages/batch_summary.html", {"summary": summary}) if summary else None
        )
    return JsonResponse(state)


def back_to(request, default: str) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


@require_POST
@page
def batch_cancel_page(request, viewer: Viewer, batch_id):
    batch = viewer.batch(batch_id)
    if not viewer.may_cancel(batch):
        raise PermissionDenied("Your role does not allow update_batch.")
    try:
        # Staff acting on another account's batch are named in its history, not "the client".
        services.batch_cancel(batch=batch, by_staff=None if viewer.owns(batch) else viewer.user)
    except ApplicationError as error:
        messages.error(request, f"Batch {batch.uuid} was not cancelled: {error.description}")
    else:
        # The detail page drops this message once the batch has stopped (progress.js).
        messages.success(
            request,
            f"Batch {batch.uuid} is cancelling: running lines finish, no new ones start.",
            extra_tags="until-stopped",
        )
    return redirect(back_to(request, reverse("batch_page", args=[batch.uuid])))


def batch_control_page(request, viewer: Viewer, batch_id, *, control, done: str, undone: str):
    """Pause and resume: the service the API's PATCH runs, its refusal (409) shown as a message."""
    batch = viewer.batch(batch_id)
    if not viewer.may_cancel(batch):
        raise PermissionDenied("Your role does not allow update_batch.")
    try:
        control(batch=batch, by_staff=None if viewer.owns(batch) else viewer.user)
    except ApplicationError as error:
        messages.error(request, f"Batch {batch.uuid} was not {undone}: {error.description}")
    else:
        messages.success(request, f"Batch {batch.uuid} {done}")
    return redirect(back_to(request, reverse("batch_page", args=[batch.uuid])))


@require_POST
@page
def batch_pause_page(request, viewer: Viewer, batch_id):
    return batch_control_page(
        request,
        viewer,
        batch_id,
        control=services.batch_pause,
        done="is paused: running lines finish, no new ones start until you resume it.",
        undone="paused",
    )


@require_POST
@page
def batch_resume_page(request, viewer: Viewer, batch_id):
    return batch_control_page(
        request,
        viewer,
        batch_id,
        control=services.batch_resume,
        done="resumes: its remaining lines run.",
        undone="resumed",
    )


@require_POST
@page
def batch_retry_page(request, viewer: Viewer, batch_id):
    """Retry (the lines that failed or never ran) and, after a dry run, "Run for real": the
    service behind POST /batches/{batch}/retry, as the API runs it."""
    batch = viewer.batch(batch_id)
    if not viewer.may_retry(batch):
        raise PermissionDenied(f"Your role does not allow create_batch and {batch.operation}.")
    try:
        created, _ = retry.batch_retry(batch=batch, user=request.user)
    except ApplicationError as error:
        messages.error(request, f"Batch {batch.uuid} was not retried: {error.description}")
        return redirect("batch_page", batch.uuid)
    started = "runs its lines for real" if batch.validate_only else "runs the lines that failed or never ran"
    messages.success(request, f"Batch {created.uuid} {started}.")
    return redirect("batch_page", created.uuid)


@require_POST
@page
def batch_delete_page(request, viewer: Viewer, batch_id):
    batch = viewer.batch(batch_id)
    if not viewer.may_delete(batch):
        raise PermissionDenied("Your role does not allow delete_batch.")
    services.batch_delete(batch=batch)
    messages.success(request, f"Batch {batch.uuid} is being deleted with its files and results.")
    return redirect("batch_list_page")

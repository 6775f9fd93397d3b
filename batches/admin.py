"""Staff admin for uploads and batches: read-only pages whose only writes are cancelling,
pausing and resuming batches and invalidating uploads, each through its service. Lists stay
fast on large tables: related rows joined, operations listed from the registry, no second
full count."""

from django.contrib import admin, messages
from django.contrib.admin import EmptyFieldListFilter
from django.db.models import Exists, OuterRef
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from batches import services
from batches.links import batch_download_url
from batches.models import Batch, BatchStatusChange, Upload
from batches.pipeline.scheduling import waiting_on_parent
from batches.selectors import batch_status_reason, batches_stalled
from batches.statuses import CANCELLABLE
from batches.templatetags.batch_accounting import batch_summary_tables, batch_waiting_words
from batches.templatetags.batch_pages import error_budget_text, pretty_json, progress_percent
from batchsite.admin import ReadOnly, UuidSearch
from batchsite.clock import DatabaseNow
from batchsite.errors import ApplicationError
from twins.registry import batchable_operations

# Refusals listed one by one in a message; past this many, only counted.
REFUSALS_LISTED = 10


class OperationFilter(admin.SimpleListFilter):
    """The registry's batchable operations, rather than a DISTINCT over every batch."""

    title = "operation"
    parameter_name = "operation"

    def lookups(self, request, model_admin):
        return [(operation.name, operation.name) for operation in batchable_operations()]

    def queryset(self, request, queryset):
        return queryset.filter(operation=self.value()) if self.value() else queryset


class StalledFilter(admin.SimpleListFilter):
    """The stalled batches, as /healthz and the metrics count them."""

    title = "stalled"
    parameter_name = "stalled"

    def lookups(self, request, model_admin):
        return [("yes", "stalled (no heartbeat for BATCH_STALL_AFTER_SECONDS)")]

    def queryset(self, request, queryset):
        return queryset.filter(pk__in=batches_stalled().values("pk")) if self.value() == "yes" else queryset


class StatusHistoryInline(ReadOnly, admin.TabularInline):
    model = BatchStatusChange
    verbose_name = "status change"
    verbose_name_plural = "status history"
    fields = readonly_fields = ["at", "from_status", "to_status", "note"]
    extra = 0


# Relative links: the admin page's own host serves them (S3 hands out absolute ones anyway).
ADMIN_BASE_URL = "/"
FILE_LABELS = [("input", "input file"), ("results", "results"), ("errors", "errors only")]


def download_links(batch: Batch) -> list[str]:
    """Links to the batch's files and, while lines run, to the results run so far."""
    links = []
    for part, label in FILE_LABELS:
        signed = batch_download_url(batch=batch, part=part, base_url=ADMIN_BASE_URL)
        # Of the lines run so far, the results only, once there are any.
        if signed is None or (signed.partial and (part != "results" or not batch.processed)):
            continue
        shown = "lines run so far" if signed.partial else label
        links.append(format_html('<a href="{}">{}</a>', signed.url, shown))
    return links


@admin.register(Batch)
class BatchAdmin(ReadOnly, UuidSearch, admin.ModelAdmin):
    list_display = [
        "uuid",
        "account",
        "operation",
        "status",
        "status_reason",
        "progress",
        "created_at",
        "updated_at",
    ]
    list_filter = ["status", StalledFilter, OperationFilter, "validate_only", "account", "created_at"]
    list_select_related = ["account"]
    search_fields = ["created_by__name", "batch_dict"]
    uuid_search_fields = ("uuid", "created_by__uuid")
    search_help_text = "A batch or creator id, or text of the creator's name or of the batch_dict."
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_per_page = 50
    actions = ["cancel_selected", "pause_selected", "resume_selected"]
    inlines = [StatusHistoryInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "uuid",
                    "account",
                    "created_by",
                    "operation",
                    "status",
                    "waiting",
                    "progress_summary",
                ]
            },
        ),
        (
            "Input",
            {
                "fields": [
                    "hash",
                    "computed_hash",
                    "batch_dict_json",
                    "id_field_name",
                    "echo_fields_names",
                    "upload",
                    "retry_of",
                ]
            },
        ),
        (
            "Controls",
            {
                "fields": [
                    "error_budget_summary",
                    "validate_only",
                    "not_before",
                    "deadline_at",
                    "priority",
                    "after",
                ]
            },
        ),
        ("Outcome", {"fields": ["failure_reason", "summary_tables", "downloads", "results_expire_at"]}),
        ("Times", {"fields": ["created_at", "updated_at", "heartbeat_at", "delete_requested_at"]}),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    def has_cancel_permission(self, request):
        return request.user.has_perm("batches.change_batch")

    @admin.display(description="progress")
    def progress(self, batch):
        percent = progress_percent(batch)
        return "—" if percent is None else f"{percent} %"

    @admin.display(description="progress")
    def progress_summary(self, batch):
        total = "?" if batch.total is None else batch.total
        return (
            f"{self.progress(batch)}: {batch.processed} of {total} lines processed, "
            f"{batch.succeeded} succeeded, {batch.failed} failed"
        )

    def get_queryset(self, request):
        # What the list's status reasons need, read by the list's own query: no query per row.
        stalled = batches_stalled().filter(pk=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(stalled=Exists(stalled), parent_pending=waiting_on_parent(), database_now=DatabaseNow())
        )

    @admin.display(description="status reason")
    def status_reason(self, batch):
        """The reason batches.selectors.batch_waiting gives, from the row's annotations."""
        reason = batch_status_reason(
            batch, now=batch.database_now, stalled=batch.stalled, parent_pending=batch.parent_pending
        )
        return "—" if reason is None else reason.replace("_", " ")

    @admin.display(description="why it waits")
    def waiting(self, batch):
        """The reason in words, its place in the queue, when it should end, since when it stalled."""
        waiting = batch_waiting_words(batch)
        if waiting is None:
            return "— (ended)"
        parts = [f"{waiting.reason} — {waiting.description}"]
        if waiting.queue_position:
            parts.append(f"place {waiting.queue_position} in its account's queue")
        if waiting.eta:
            rate = f" at {waiting.rate}" if waiting.rate else ""
            parts.append(f"should end at {waiting.eta.clock} ({waiting.eta.relative}){rate}")
        if waiting.stalled_since:
            parts.append(f"stalled since {waiting.stalled_since.clock} ({waiting.stalled_since.relative})")
        return " · ".join(parts)

    @admin.display(description="summary")
    def summary_tables(self, batch):
        summary = batch_summary_tables(batch)
        return (
            "none yet"
            if summary is None
            else render_to_string("admin/batches/batch/summary.html", {"summary": summary})
        )

    @admin.display(description="batch_dict")
    def batch_dict_json(self, batch):
        return (
            "—" if batch.batch_dict is None else format_html("<pre>{}</pre>", pretty_json(batch.batch_dict))
        )

    @admin.display(description="id field")
    def id_field_name(self, batch):
        return batch.id_field or "—"

    @admin.display(description="echo fields")
    def echo_fields_names(self, batch):
        return ", ".join(batch.echo_fields) or "—"

    @admin.display(description="after")
    def after(self, batch):
        """The batches it waits for, each with what it must reach (section 14's `after`)."""
        requirements = batch.requirements.select_related("parent").order_by("pk")
        return (
            format_html_join(
                mark_safe("<br>"),
                "{} must be {} (now {})",
                (
                    (
                        requirement.parent_uuid,
                        requirement.require,
                        requirement.parent.status if requirement.parent else "deleted",
                    )
                    for requirement in requirements
                ),
            )
            or "—"
        )

    @admin.display(description="error budget")
    def error_budget_summary(self, batch):
        return error_budget_text(batch.error_budget)

    @admin.display(description="files")
    def downloads(self, batch):
        links = download_links(batch)
        return format_html_join(" · ", "{}", ((link,) for link in links)) if links else "none yet"

    @admin.action(description="Cancel selected batches", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        asked, refused = 0, []
        for batch in queryset.select_related(None).only("uuid"):
            try:
                services.batch_cancel(batch=batch, by_staff=request.user)
            except ApplicationError as error:
                refused.append(f"{batch.uuid}: {error.description}")
            else:
                asked += 1
        if asked:
            messages.success(
                request, f"Cancelling {asked} batch(es): running lines finish, no new ones start."
            )
        if refused:
            listed = "; ".join(refused[:REFUSALS_LISTED])
            more = f" and {len(refused) - REFUSALS_LISTED} more" if len(refused) > REFUSALS_LISTED else ""
            messages.warning(request, f"{len(refused)} batch(es) left as they were: {listed}{more}.")

    def control_selected(self, request, queryset, *, control, done: str):
        """Pause or resume each batch through its service, as the cancel action does: what
        happened to each, and why the others were left as they were."""
        changed, refused = 0, []
        for batch in queryset.select_related(None).only("uuid", "status"):
            try:
                control(batch=batch, by_staff=request.user)
            except ApplicationError as error:
                refused.append(f"{batch.uuid}: {error.description}")
            else:
                changed += 1
        if changed:
            messages.success(request, f"{done} {changed} batch(es).")
        if refused:
            listed = "; ".join(refused[:REFUSALS_LISTED])
            more = f" and {len(refused) - REFUSALS_LISTED} more" if len(refused) > REFUSALS_LISTED else ""
            messages.warning(request, f"{len(refused)} batch(es) left as they were: {listed}{more}.")

    @admin.action(description="Pause selected batches", permissions=["cancel"])
    def pause_selected(self, request, queryset):
        self.control_selected(
            request,
            queryset,
            control=services.batch_pause,
            done="Paused (running lines finish, no new ones start)",
        )

    @admin.action(description="Resume selected paused batches", permissions=["cancel"])
    def resume_selected(self, request, queryset):
        self.control_selected(request, queryset, control=services.batch_resume, done="Resumed")

    def get_urls(self):
        cancel = path(
            "<path:object_id>/cancel/",
            self.admin_site.admin_view(self.cancel_view),
            name="batches_batch_cancel",
        )
        return [cancel, *super().get_urls()]

    def cancel_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_cancel_permission(request):
            messages.error(request, "You may not cancel batches.")
        else:
            batch = get_object_or_404(Batch, pk=object_id)
            try:
                services.batch_cancel(batch=batch, by_staff=request.user)
            except ApplicationError as error:
                messages.warning(request, f"The batch was not cancelled: {error.description}")
            else:
                messages.success(request, "The batch is cancelling: running lines finish, no new ones start.")
        return HttpResponseRedirect(reverse("admin:batches_batch_change", args=[object_id]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        batch = Batch.objects.filter(pk=object_id).only("status").first()
        extra_context = {
            **(extra_context or {}),
            "can_cancel": batch is not None
            and batch.status in CANCELLABLE
            and self.has_cancel_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Upload)
class UploadAdmin(ReadOnly, UuidSearch, admin.ModelAdmin):
    list_display = ["handler", "account", "created_by", "size", "uploaded_at", "expires_at", "used_at"]
    list_select_related = ["account", "created_by"]
    list_filter = ["account", ("used_at", EmptyFieldListFilter), ("invalidated_at", EmptyFieldListFilter)]
    search_fields = ["created_by__name"]
    uuid_search_fields = ("handler", "created_by__uuid")
    show_full_result_count = False
    actions = ["invalidate_selected"]
    readonly_fields = [
        "handler",
        "account",
        "created_by",
        "file_name",
        "size",
        "content_type",
        "uploaded_at",
        "expires_at",
        "invalidated_at",
        "used_at",
        "created_at",
    ]

    def has_invalidate_permission(self, request):
        return request.user.has_perm("batches.change_upload")

    @admin.action(description="Invalidate selected upload URLs", permissions=["invalidate"])
    def invalidate_selected(self, request, queryset):
        count = 0
        for upload in queryset:
            services.upload_invalidate(upload=upload)
            count += 1
        messages.success(request, f"Invalidated {count} upload URL(s); files no batch holds are deleted.")

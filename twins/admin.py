"""Staff admin for the twin registry: read-only, because twins change only through their
operations (the REST routes and batches), which keep certificates and timestamps right."""

from django.contrib import admin

from batchsite.admin import ReadOnly, UuidSearch
from twins.models import Identity, LedgerEntry, Twin


class IdentityInline(ReadOnly, admin.TabularInline):
    model = Identity
    fields = readonly_fields = ["identity", "validity_at", "visibility", "created_at", "updated_at"]
    extra = 0


class LedgerEntryInline(ReadOnly, admin.TabularInline):
    model = LedgerEntry
    fields = readonly_fields = ["key", "value", "visibility", "created_at", "updated_at", "value_changed_at"]
    extra = 0


@admin.register(Twin)
class TwinAdmin(ReadOnly, UuidSearch, admin.ModelAdmin):
    list_display = ["uuid", "account", "status", "created_at", "updated_at"]
    list_filter = ["status", "account"]
    list_select_related = ["account"]
    search_fields = ["description"]
    uuid_search_fields = ("uuid",)
    show_full_result_count = False
    readonly_fields = [
        "uuid",
        "account",
        "status",
        "description",
        "created_at",
        "updated_at",
        "terminated_at",
    ]
    inlines = [IdentityInline, LedgerEntryInline]


@admin.register(Identity)
class IdentityAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["identity", "twin", "validity_at", "created_at"]
    list_select_related = ["twin"]
    search_fields = ["identity"]
    show_full_result_count = False
    readonly_fields = ["twin", "identity", "validity_at", "visibility", "created_at", "updated_at"]

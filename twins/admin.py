from django.contrib import admin

from twins.models import Identity, LedgerEntry, Twin


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0


class LedgerEntryInline(admin.TabularInline):
    model = LedgerEntry
    extra = 0


@admin.register(Twin)
class TwinAdmin(admin.ModelAdmin):
    list_display = ["uuid", "account", "status", "created_at", "updated_at"]
    list_filter = ["status"]
    search_fields = ["uuid", "account__name"]
    list_select_related = ["account"]
    inlines = [IdentityInline, LedgerEntryInline]


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ["identity", "twin", "validity_at", "created_at"]
    search_fields = ["identity", "twin__uuid"]
    raw_id_fields = ["twin"]

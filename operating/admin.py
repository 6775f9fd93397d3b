from django.conf import settings
from django.contrib import admin

from operating.models import AccountQuota
from operating.services import quota_limits

# The admin's index links to the operations dashboard (operating.views).
admin.site.index_template = "admin/operating/index.html"


@admin.register(AccountQuota)
class AccountQuotaAdmin(admin.ModelAdmin):
    """An account's own quotas; an empty field means the default from settings."""

    list_display = ["account", "active_batches", "batch_lines_per_day", "upload_bytes"]
    list_select_related = ["account"]
    autocomplete_fields = ["account"]
    search_fields = ["account__name"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return ["account"] if obj is not None else []

    @admin.display(description="max active batches")
    def active_batches(self, quota):
        return self._shown(quota.max_active_batches, quota_limits(None).max_active_batches)

    @admin.display(description="max batch lines per day")
    def batch_lines_per_day(self, quota):
        return self._shown(quota.max_batch_lines_per_day, quota_limits(None).max_batch_lines_per_day)

    @admin.display(description="max upload bytes")
    def upload_bytes(self, quota):
        return self._shown(quota.max_upload_bytes, settings.QUOTA_MAX_UPLOAD_BYTES)

    @staticmethod
    def _shown(value, default) -> str:
        return f"{value:,}" if value is not None else f"{default:,} (default)"

"""The staff dashboard, an admin page: throughput, batches by status, busiest accounts and
quota refusals, drawn on the server."""

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils.safestring import mark_safe

from batchsite.middleware import require_safe
from operating import charts, selectors

HOUR_CHOICES = (1, 3, 6, 12, 24)


def _dashboard(request):
    try:
        hours = int(request.GET.get("hours", 3))
    except ValueError:
        hours = 3
    hours = hours if hours in HOUR_CHOICES else 3
    series = selectors.lines_per_minute(hours=hours)
    statuses = selectors.batches_by_status()
    context = {
        **admin.site.each_context(request),
        "title": "Operations dashboard",
        "hours": hours,
        "hour_choices": HOUR_CHOICES,
        "lines_total": sum(lines for _, lines, _ in series),
        "failed_total": sum(failed for _, _, failed in series),
        "peak": max((lines for _, lines, _ in series), default=0),
        # Built from numbers and escaped labels only (charts.py).
        "lines_chart": mark_safe(charts.lines_per_minute_svg(series)),
        "status_chart": mark_safe(charts.bars_svg(statuses, title="Batches by status")),
        "statuses": statuses,
        "busiest": selectors.busiest_accounts(),
        "refusals": selectors.quota_refusals(),
    }
    return TemplateResponse(request, "admin/operating/dashboard.html", context)


dashboard = admin.site.admin_view(require_safe(_dashboard))

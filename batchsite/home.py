"""`/`: a browser goes to the pages (the sign-in page first when needed); an API client gets
a small index of links."""

from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from batchsite.middleware import require_safe

INDEX = {"pages": "batch_list_page", "docs": "docs", "schema": "schema", "health": "healthz"}


@require_safe
def home(request):
    # `*/*` (curl, scripts) prefers the first offered type, JSON; a browser names text/html.
    if request.get_preferred_type(["application/json", "text/html"]) == "text/html":
        return redirect("batch_list_page")
    return JsonResponse(
        {
            "service": "Batch service",
            "links": {name: request.build_absolute_uri(reverse(route)) for name, route in INDEX.items()},
        }
    )

"""Per request: a trace id for the logs (and error bodies), the HTTP metrics, and the API call
count of the caller's account and user."""

import time
import uuid

from django.conf import settings

from batchsite import logs
from operating import metrics, services


def route_of(request) -> str:
    """The URL pattern that served the request (`batches/<uuid:batch>`), never the raw path,
    so the metrics' label values stay few."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return match.route
    if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "<static>"
    return "<unmatched>"


class OperatingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        trace = logs.trace_var.set(uuid.uuid4().hex)
        account = logs.account_var.set(None)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            elapsed = time.perf_counter() - started
            route = route_of(request)
            metrics.http_requests.labels(
                metrics.method_label(request.method), route, str(response.status_code)
            ).inc()
            metrics.http_request_seconds.labels(route).observe(elapsed)
            caller = getattr(request, "usage_caller", None)
            if caller is not None:
                services.api_call_count(account_id=caller[0], user_id=caller[1])
            services.usage_flush()
            return response
        finally:
            logs.trace_var.reset(trace)
            logs.account_var.reset(account)

"""Unsupported methods answer 405 with the error body on every route."""

from django.http import JsonResponse
from django.urls import Resolver404, resolve

from batchsite.errors import error_body

# No route serves these (there is no CORS here): refused before any view or login redirect.
NEVER_SERVED = frozenset({"TRACE", "CONNECT", "OPTIONS"})


def method_not_allowed(method: str, allow: str = "") -> JsonResponse:
    response = JsonResponse(
        error_body(
            status_code=405, subcode="method_not_allowed", description=f'Method "{method}" not allowed.'
        ),
        status=405,
    )
    if allow:
        response["Allow"] = allow
    return response


def allowed_methods(path: str) -> str:
    """The methods the route's view serves, for the Allow header of a 405 (RFC 9110)."""
    try:
        view_class = getattr(resolve(path).func, "view_class", None)
    except Resolver404:
        return ""
    if view_class is None:
        return ""
    names = [
        name.upper()
        for name in getattr(view_class, "http_method_names", [])
        if hasattr(view_class, name) and name.upper() not in NEVER_SERVED
    ]
    if "GET" in names and "HEAD" not in names:
        names.append("HEAD")
    return ", ".join(names)


class MethodNotAllowedMiddleware:
    """TRACE, CONNECT and OPTIONS are 405 everywhere; any other 405 a view answers (Django's
    require_GET/require_POST, class-based views) gets the error body like the API's."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in NEVER_SERVED:
            return method_not_allowed(request.method, allowed_methods(request.path_info))
        response = self.get_response(request)
        if response.status_code == 405 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            return method_not_allowed(request.method, response.get("Allow", ""))
        return response

"""Unsupported methods answer 405 with the error body on every route, before the CSRF check
(which would otherwise answer first, with its 403 page) and before any login redirect."""

from django.http import JsonResponse
from django.urls import Resolver404, ResolverMatch, resolve
from django.views.decorators.http import require_http_methods as django_require_http_methods

from batchsite.errors import error_body

# No route serves these (there is no CORS here): refused before any view or login redirect.
NEVER_SERVED = frozenset({"TRACE", "CONNECT", "OPTIONS"})
SAFE = frozenset({"GET", "HEAD"})
# The admin's views take any method and read a POST as a form (CSRF-checked): its pages without
# a form serve GET only, by URL name (None: the catch-all, which only answers 404), and none of
# its views serves PUT, PATCH or DELETE.
ADMIN_PAGES_WITHOUT_FORM = frozenset(
    {"index", "app_list", "password_change_done", "jsi18n", "autocomplete", "view_on_site", None}
)
ADMIN_FORMS = SAFE | {"POST"}


def require_http_methods(methods):
    """Django's decorator, which also tells MethodNotAllowedMiddleware what the view serves."""

    def decorator(view):
        wrapped = django_require_http_methods(list(methods))(view)
        # Outer decorators (login_required, admin_view) copy it along with the view's __dict__.
        wrapped.served_methods = frozenset(methods)
        return wrapped

    return decorator


require_safe = require_http_methods(SAFE)
require_POST = require_http_methods({"POST"})


def admin_methods(url_name: str | None) -> frozenset[str]:
    if url_name == "logout":
        return frozenset({"POST"})
    if url_name in ADMIN_PAGES_WITHOUT_FORM or url_name.endswith("_history"):
        return SAFE
    return ADMIN_FORMS


def served_methods(view, match: ResolverMatch) -> frozenset[str] | None:
    """The methods a route serves, or None when its view does not say (it then answers itself)."""
    declared = getattr(view, "served_methods", None)
    if declared is not None:
        return declared
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        # as_view(http_method_names=[...]) narrows them on the instance, not on the class.
        listed = getattr(view, "view_initkwargs", {}).get(
            "http_method_names", getattr(view_class, "http_method_names", [])
        )
        names = {name.upper() for name in listed if hasattr(view_class, name)}
        # Django's View serves HEAD with its GET (RFC 9110).
        return frozenset(names - NEVER_SERVED | ({"HEAD"} if "GET" in names else set()))
    if "admin" in match.namespaces:
        return admin_methods(match.url_name)
    return None


def allow_header(methods: frozenset[str]) -> str:
    return ", ".join(sorted(methods - NEVER_SERVED))


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


class MethodNotAllowedMiddleware:
    """TRACE, CONNECT and OPTIONS are 405 everywhere; a method the route does not serve is 405
    before the CSRF middleware's check (settings place this middleware above it); any other 405
    a view answers gets the error body like the API's."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in NEVER_SERVED:
            try:
                match = resolve(request.path_info)
            except Resolver404:
                return method_not_allowed(request.method)
            methods = served_methods(match.func, match)
            return method_not_allowed(request.method, allow_header(methods) if methods else "")
        response = self.get_response(request)
        if response.status_code == 405 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            return method_not_allowed(request.method, response.get("Allow", ""))
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        methods = served_methods(view_func, request.resolver_match)
        if methods is not None and request.method not in methods:
            return method_not_allowed(request.method, allow_header(methods))
        return None

"""Every API route answers 405 with the error body for a method it does not serve, whoever
asks: PUT, TRACE, OPTIONS or HEAD are not refusals of the caller."""

import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tests.helpers import assert_error

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")
NOT_API = ("admin/", "ui/", "schema", "docs")


def api_routes():
    """(path, view class or function) for every route outside the admin, pages and schema."""
    found = []

    def walk(patterns, prefix):
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route)
            elif isinstance(entry, URLPattern) and not route.startswith(NOT_API):
                found.append((route, getattr(entry.callback, "view_class", entry.callback)))

    walk(get_resolver().url_patterns, "")
    return found


def concrete(route: str) -> str:
    """A path for the route: a random uuid where it takes one, a word elsewhere."""
    parts = []
    for part in route.split("/"):
        if part.startswith("<"):
            part = str(uuid.uuid4()) if part.startswith("<uuid:") else "nothing"
        parts.append(part)
    return "/" + "/".join(parts)


def served(view) -> set[str]:
    actions = getattr(view, "required_actions", None)
    if actions is not None:
        return set(actions)
    if isinstance(view, type):
        return {m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)} | (
            {"HEAD"} if hasattr(view, "get") else set()
        )
    return {"GET", "HEAD"}  # /healthz


ROUTES = api_routes()


def test_the_table_covers_every_api_route():
    paths = {route for route, _ in ROUTES}
    assert {"healthz", "roles", "users/<uuid:user>/secrets", "batches", "uploads/<str:token>"} <= paths
    assert len(paths) >= 20


@pytest.mark.django_db
@pytest.mark.parametrize("route,view", ROUTES, ids=[route for route, _ in ROUTES])
def test_unserved_methods_are_405(caller, route, view):
    path = concrete(route)
    for method in sorted(set(METHODS) - served(view)):
        for client in (caller.client, APIClient()):
            response = client.generic(method, path)
            if method == "HEAD":
                assert response.status_code == 405, (method, path)
                continue
            body = assert_error(response, 405, "method_not_allowed")
            assert method in body["description"], body

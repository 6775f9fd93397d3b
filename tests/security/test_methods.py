"""Every route (API and pages; the admin is Django's) answers 405 with the error body for a
method it does not serve, whoever asks: PUT, TRACE, OPTIONS or HEAD are not refusals of the
caller."""

import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tests.helpers import assert_error

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")
NOT_API = ("admin/", "ui/")
# The pages are plain Django views: what each serves, by route.
PAGES = {
    "ui/": {"GET", "HEAD"},
    "ui/login": {"GET", "HEAD", "POST"},
    "ui/logout": {"POST"},
    "ui/batches": {"GET", "HEAD"},
    "ui/batches/new": {"GET", "HEAD"},
    "ui/batches/<uuid:batch_id>": {"GET", "HEAD"},
    "ui/batches/<uuid:batch_id>/state": {"GET", "HEAD"},
    "ui/batches/<uuid:batch_id>/cancel": {"POST"},
    "ui/batches/<uuid:batch_id>/delete": {"POST"},
}


def routes(*, pages: bool):
    """(path, view class or function) for every API route, or every page route."""
    found = []

    def walk(patterns, prefix):
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route)
            elif isinstance(entry, URLPattern) and (
                route.startswith("ui/") if pages else not route.startswith(NOT_API)
            ):
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


ROUTES = routes(pages=False)
PAGE_ROUTES = routes(pages=True)


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


def test_the_page_table_covers_every_page():
    assert {route for route, _ in PAGE_ROUTES} == set(PAGES)


@pytest.mark.django_db
@pytest.mark.parametrize("route", sorted(PAGES))
def test_unserved_methods_on_pages_are_405(route):
    path = concrete(route)
    for method in sorted(set(METHODS) - PAGES[route]):
        response = Client().generic(method, path)
        if method == "HEAD":
            assert response.status_code == 405, (method, path)
            continue
        body = assert_error(response, 405, "method_not_allowed")
        assert method in body["description"], body

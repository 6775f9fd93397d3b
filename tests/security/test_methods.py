"""Every route (API, pages and the admin) answers 405 with the error body and an Allow header
for a method it does not serve, whoever asks and before the CSRF check: PUT, TRACE, OPTIONS or
HEAD are not refusals of the caller. The methods a route serves keep their CSRF check.

The clients here check CSRF as a browser's request meets it (Django's test client skips it by
default)."""

import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tests.support.assertions import assert_error

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")
ANY_UUID = "00000000-0000-4000-8000-000000000001"
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
    "ui/batches/<uuid:batch_id>/retry": {"POST"},
    "ui/batches/<uuid:batch_id>/pause": {"POST"},
    "ui/batches/<uuid:batch_id>/resume": {"POST"},
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


def csrf_checked(user=None) -> Client:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def assert_refused(response, method: str, served_methods: set[str]):
    if method == "HEAD":
        assert response.status_code == 405, response
        return
    body = assert_error(response, 405, "method_not_allowed")
    assert method in body["description"], body
    assert set(response["Allow"].split(", ")) == served_methods, response["Allow"]


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
    expected = served(view) | ({"HEAD"} if "GET" in served(view) else set())
    # A session's request meets DRF's CSRF check at authentication, before its own 405.
    for client in (caller.client, APIClient(), csrf_checked(caller.user)):
        for method in sorted(set(METHODS) - expected):
            assert_refused(client.generic(method, path), method, expected)


def test_the_page_table_covers_every_page():
    assert {route for route, _ in PAGE_ROUTES} == set(PAGES)


@pytest.mark.django_db
@pytest.mark.parametrize("route", sorted(PAGES))
def test_unserved_methods_on_pages_are_405(route):
    path = concrete(route)
    for method in sorted(set(METHODS) - PAGES[route]):
        assert_refused(csrf_checked().generic(method, path), method, PAGES[route])


# The admin's pages: what each serves (its forms take POST, none takes PUT, PATCH or DELETE).
ADMIN = {
    "/admin/": {"GET", "HEAD"},
    "/admin/batches/": {"GET", "HEAD"},
    "/admin/batches/batch/": {"GET", "HEAD", "POST"},
    "/admin/batches/batch/add/": {"GET", "HEAD", "POST"},
    f"/admin/batches/batch/{ANY_UUID}/change/": {"GET", "HEAD", "POST"},
    f"/admin/batches/batch/{ANY_UUID}/delete/": {"GET", "HEAD", "POST"},
    f"/admin/batches/batch/{ANY_UUID}/history/": {"GET", "HEAD"},
    "/admin/login/": {"GET", "HEAD", "POST"},
    "/admin/logout/": {"POST"},
    "/admin/password_change/": {"GET", "HEAD", "POST"},
    "/admin/password_change/done/": {"GET", "HEAD"},
    "/admin/dashboard/": {"GET", "HEAD"},
    "/admin/no/such/page/": {"GET", "HEAD"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("path", sorted(ADMIN))
def test_unserved_methods_on_the_admin_are_405(admin_user, path):
    for client in (csrf_checked(), csrf_checked(admin_user)):
        for method in sorted(set(METHODS) - ADMIN[path]):
            assert_refused(client.generic(method, path), method, ADMIN[path])


# Unsafe methods that routes serve: their forms' CSRF check still answers first.
FORM_POSTS = (
    "/ui/login",
    "/ui/logout",
    f"/ui/batches/{ANY_UUID}/cancel",
    f"/ui/batches/{ANY_UUID}/delete",
    f"/ui/batches/{ANY_UUID}/retry",
    f"/ui/batches/{ANY_UUID}/pause",
    f"/ui/batches/{ANY_UUID}/resume",
    "/admin/login/",
    "/admin/logout/",
    "/admin/batches/batch/",
    f"/admin/batches/batch/{ANY_UUID}/change/",
    f"/admin/batches/batch/{ANY_UUID}/cancel/",
)


@pytest.mark.django_db
@pytest.mark.parametrize("path", FORM_POSTS)
def test_served_unsafe_methods_keep_their_csrf_check(admin_user, path):
    response = csrf_checked(admin_user).post(path, {"next": "/ui/batches"})
    assert response.status_code == 403, response
    assert b"CSRF" in response.content


@pytest.mark.django_db
def test_a_form_with_its_csrf_token_passes(caller):
    client = csrf_checked(caller.user)
    token = client.get("/ui/batches").cookies["csrftoken"].value
    response = client.post("/ui/logout", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/ui/login"
    assert client.get("/ui/batches")["Location"].startswith("/ui/login")

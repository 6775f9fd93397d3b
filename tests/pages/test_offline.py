"""Every page works with no internet: the browser aborts any request that would leave the
server, and each page must load without one, without a failed request and without a
Content-Security-Policy refusal. Swagger UI comes from the pinned drf-spectacular-sidecar
package, served by the site itself."""

import re
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import expect

from tests.support.batch_files import jsonl
from tests.support.browser_pages import sign_in
from tests.support.factories import BatchFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
LOCAL_HOSTS = {"localhost", "127.0.0.1"}


class Offline:
    """Aborts every request to another host and remembers what went wrong."""

    def __init__(self, page):
        self.left_the_server: list[str] = []
        self.failed: list[str] = []
        self.refused: list[str] = []
        page.route("**/*", self.route)
        page.on("requestfailed", lambda request: self.failed.append(f"{request.url} {request.failure}"))
        page.on(
            "console",
            lambda message: (
                self.refused.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )

    def route(self, route):
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.left_the_server.append(route.request.url)
            route.abort()

    def assert_clean(self):
        assert self.left_the_server == []
        assert self.failed == []
        assert self.refused == []


def test_docs_render_their_operations_with_no_internet(page):
    offline = Offline(page)
    response = page.goto("/docs")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() > 30
    expect(page.locator(".opblock-summary-path", has_text="/batches/{batch}/retry")).to_be_visible()
    page.locator(".opblock-summary", has_text="/batches").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    offline.assert_clean()


def test_the_pages_load_everything_from_the_site(page, caller):
    batch = BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(3)))
    offline = Offline(page)

    page.goto("/", wait_until="networkidle")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    sign_in(page, caller)
    for path in ("/", "/ui/batches", "/ui/batches/new", f"/ui/batches/{batch.uuid}", "/admin/login/"):
        response = page.goto(path, wait_until="networkidle")
        assert response.ok, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    offline.assert_clean()


def test_an_api_client_gets_an_index_of_links(live_server):
    index = requests.get(f"{live_server.url}/", headers={"Accept": "*/*"}, timeout=10)
    assert index.status_code == 200
    links = index.json()["links"]
    assert set(links) == {"pages", "docs", "schema", "health"}
    assert links["docs"] == f"{live_server.url}/docs"
    assert requests.get(links["schema"], timeout=10).status_code == 200

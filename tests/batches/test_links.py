"""One builder of file URLs (batches.links): the API, the pages and the admin hand out the same
kind of URL for the same batch and part, granting the same file, so none can drift apart."""

import re
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import resolve, reverse

from batches.models import BatchStatus
from batches.partial import partial_grant
from batches.storage import download_url_file
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import run_batch

S = BatchStatus
pytestmark = pytest.mark.django_db


def api_url(caller, batch) -> str:
    return caller.client.get(f"/batches/{batch.uuid}", {"download": "true"}).json()["download"]["url"]


def page_urls(caller, batch) -> dict:
    browser = Client()
    browser.force_login(caller.user)
    return browser.get(reverse("batch_state", args=[batch.pk])).json()["downloads"]


def admin_url(admin_client, batch, label: str) -> str:
    page = admin_client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()
    return re.search(rf'<a href="([^"]+)">{label}</a>', page).group(1).replace("&amp;", "&")


def endpoint(url: str) -> tuple[str, str]:
    """The route a URL names on this server, and its token."""
    match = resolve(urlsplit(url).path)
    return match.url_name, match.kwargs["token"]


def test_a_finished_batchs_results_are_linked_alike_by_the_api_the_pages_and_the_admin(caller, admin_client):
    batch = run_batch(BatchFactory(caller=caller))
    assert batch.status == S.COMPLETED
    urls = [
        api_url(caller, batch),
        page_urls(caller, batch)["results"],
        admin_url(admin_client, batch, "results"),
    ]

    routes = {endpoint(url)[0] for url in urls}
    grants = {download_url_file(endpoint(url)[1]) for url in urls}
    assert routes == {"download_file"}
    assert len(grants) == 1, grants
    assert grants.pop().filename == f"{batch.uuid}-results.jsonl"


def test_a_running_batchs_lines_so_far_are_linked_alike_by_the_api_the_pages_and_the_admin(
    caller, admin_client
):
    batch = BatchFactory(caller=caller, status=S.PROCESSING, total=10, processed=3, succeeded=3)
    urls = [
        api_url(caller, batch),
        page_urls(caller, batch)["partial"],
        admin_url(admin_client, batch, "lines run so far"),
    ]

    routes = {endpoint(url)[0] for url in urls}
    grants = {partial_grant(endpoint(url)[1]) for url in urls}
    assert routes == {"download_partial"}
    assert grants == {(str(batch.pk), "results", "json")}

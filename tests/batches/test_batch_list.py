"""One batch listing (batches.selectors.batch_list) and one cursor (batchsite.paging) for the
API and the pages: a cursor from either pages the other alike, and one this service did not
issue is never read as a position."""

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from batches.models import Batch, BatchStatus
from tests.support.assertions import assert_error
from tests.support.factories import BatchFactory

pytestmark = pytest.mark.django_db
LIST = reverse("batch_list_page")
PAGE_SIZE = 25


@pytest.fixture
def listed(caller) -> list[str]:
    """The caller's 30 batches, newest first."""
    BatchFactory.create_batch(30, caller=caller, status=BatchStatus.COMPLETED)
    return [str(pk) for pk in Batch.objects.order_by("-created_at", "-uuid").values_list("uuid", flat=True)]


def browser(caller) -> Client:
    client = Client()
    client.force_login(caller.user)
    return client


def page_rows(response) -> list[str]:
    assert response.status_code == 200, response.content[:500]
    return [str(row.batch.uuid) for row in response.context["rows"]]


def test_a_cursor_from_the_pages_pages_the_api_alike(caller, listed):
    first = browser(caller).get(LIST)
    assert page_rows(first) == listed[:PAGE_SIZE]
    cursor = parse_qs(urlsplit(first.context["next_page"]).query)["cursor"][0]

    rest = caller.client.get("/batches", {"limit": PAGE_SIZE, "cursor": cursor}).json()
    assert list(rest["batches"]) == listed[PAGE_SIZE:]


def test_a_cursor_from_the_api_pages_the_pages_alike(caller, listed):
    cursor = caller.client.get("/batches", {"limit": PAGE_SIZE}).json()["cursor"]
    assert page_rows(browser(caller).get(LIST, {"cursor": cursor})) == listed[PAGE_SIZE:]


def test_a_cursor_not_issued_here_is_refused_by_the_api_and_ignored_by_the_pages(caller, listed):
    issued = caller.client.get("/batches", {"limit": 5}).json()["cursor"]
    position, signature = base64.urlsafe_b64decode(issued).decode().rsplit(":", 1)
    created_at, _ = json.loads(position)
    further = json.dumps([created_at, listed[PAGE_SIZE]])
    forged = [
        base64.urlsafe_b64encode(f"{further}:{signature}".encode()).decode(),
        base64.urlsafe_b64encode(further.encode()).decode(),  # a position, unsigned
    ]
    for cursor in forged:
        assert_error(caller.client.get("/batches", {"cursor": cursor}), 400, "invalid_cursor")
        assert page_rows(browser(caller).get(LIST, {"cursor": cursor})) == listed[:PAGE_SIZE]

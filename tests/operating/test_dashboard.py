"""The staff dashboard (an admin page): lines per minute as a server-drawn SVG chart, batches
by status, the busiest accounts and quota refusals; staff only; no script."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from playwright.sync_api import expect

from operating.models import AccountQuota
from operating.services import usage_flush
from tests.pages.conftest import browser, page  # noqa: F401 (fixtures)
from tests.support.batch_api import create_batch, uploaded_handler
from tests.support.batch_files import jsonl
from tests.support.browser_pages import screenshot
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import run_batch

DASHBOARD = reverse("operating_dashboard")
PASSWORD = "a long password for the dashboard test"


def activity(caller, *, lines: int, refusals: int) -> None:
    """A batch that ran `lines` lines, and `refusals` creates refused by a quota."""
    run_batch(
        BatchFactory(
            caller=caller,
            content=jsonl({"description": {"n": n}} for n in range(lines)),
        )
    )
    AccountQuota.objects.update_or_create(account=caller.account, defaults={"max_active_batches": 0})
    for _ in range(refusals):
        assert create_batch(caller, uploaded_handler(caller)).status_code == 429
    usage_flush(force=True)


@pytest.mark.django_db
def test_the_dashboard_shows_throughput_statuses_accounts_and_refusals(admin_client, caller, stranger):
    activity(caller, lines=7, refusals=2)
    run_batch(BatchFactory(caller=stranger, content=jsonl([{"description": {}}])))

    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script" not in html.split('id="operating-dashboard"')[1]
    chart = re.search(r'<svg[^>]*class="operating-chart".*?</svg>', html, re.S).group(0)
    assert "<polygon" in chart and "Lines run per minute" in chart
    assert "8 lines (0 failed)" in html
    busiest = response.context["busiest"]
    assert [row["name"] for row in busiest] == [caller.account.name, stranger.account.name]
    assert busiest[0]["batch_lines"] == 7
    assert [(row["name"], row["quota"], row["count"]) for row in response.context["refusals"]] == [
        (caller.account.name, "max_active_batches", 2)
    ]
    assert ("completed", 2) in response.context["statuses"]
    # Linked from the admin's index.
    assert DASHBOARD in admin_client.get(reverse("admin:index")).content.decode()


@pytest.mark.django_db
def test_only_staff_see_it(client, caller):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    caller.user.set_password(PASSWORD)
    caller.user.save()
    client.login(username=caller.user.username, password=PASSWORD)
    assert client.get(DASHBOARD).status_code == 302


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_in_a_browser(page, caller, stranger):  # noqa: F811 (the fixture)
    activity(caller, lines=1500, refusals=3)
    run_batch(
        BatchFactory(
            caller=stranger,
            content=jsonl({"description": {"n": n}} for n in range(400)),
        )
    )
    get_user_model().objects.create_superuser("operator", "operator@example.com", PASSWORD)

    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Operations dashboard").click()

    expect(page.get_by_role("heading", name="Lines run per minute, last 3 hours")).to_be_visible()
    chart = page.locator("svg.operating-chart").first
    expect(chart).to_be_visible()
    assert chart.bounding_box()["width"] > 600
    expect(page.locator("#operating-dashboard")).to_contain_text("1900 lines (0 failed)")
    expect(page.locator("#busiest-accounts tbody tr").first).to_contain_text(caller.account.name)
    expect(page.locator("#quota-refusals tbody tr").first).to_contain_text("max_active_batches")
    expect(page.locator("#quota-refusals tbody tr").first).to_contain_text("3")
    screenshot(page, "dashboard")

    page.get_by_role("link", name="1 h").click()
    expect(page.get_by_role("heading", name="Lines run per minute, last 1 hour")).to_be_visible()

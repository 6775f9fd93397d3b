"""A web user gets in with no operator at a Python shell: `create_account --password` or
`user_password` prints a password, the sign-in field shows a whole user id on a phone, and a
wrong try says what the field wants."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from tests.support.browser_pages import screenshot

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def command(*args) -> dict:
    out = io.StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_create_account_password_signs_in_to_the_pages_on_a_400_px_screen(browser, live_server):
    printed = command("create_account", "Acme", "--password")
    context = browser.new_context(base_url=live_server.url, viewport={"width": 400, "height": 800})
    page = context.new_page()
    try:
        page.goto("/ui/login")
        field = page.get_by_label("User id")
        field.fill(printed["user"])
        assert field.evaluate("input => input.scrollWidth <= input.clientWidth"), "the user id is cut"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(page, "sign-in-400px")

        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        alert = page.get_by_role("alert")
        assert "user id is a UUID" in alert.inner_text()

        page.get_by_label("User id").fill(printed["user"])
        page.get_by_label("Password").fill(printed["password"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/ui/batches")
    finally:
        context.close()


def test_user_password_gives_an_existing_user_a_new_password(client):
    printed = command("create_account", "Acme")
    assert not client.login(username=printed["user"], password="")
    reset = command("user_password", printed["user"])
    assert reset["user"] == printed["user"]
    assert client.login(username=printed["user"], password=reset["password"])
    with pytest.raises(CommandError, match="not a user id"):
        call_command("user_password", "admin")

"""Steps of the browser tests in a Playwright page: signing in through the form as a person
would, and screenshots of what a page showed."""

from pathlib import Path

from django.conf import settings

SCREENSHOTS = Path(settings.BASE_DIR) / "screenshots"
PASSWORD = "a long password for the browser tests"


def sign_in(page, caller) -> None:
    """Through the login form, as a person would, after an admin set the password."""
    caller.user.set_password(PASSWORD)
    caller.user.save()
    page.goto("/ui/login")
    page.get_by_label("User id").fill(caller.user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/batches")


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

"""Absolute URLs come from configuration, never from an unchecked Host; HTTPS=true is one
switch that leaves `manage.py check --deploy` with nothing to say."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.test import Client, override_settings

FORGED = "evil.example"
ROOT = Path(__file__).resolve().parents[2]


def test_a_forged_host_is_refused_by_default(caller):
    response = caller.client.post("/cache", HTTP_HOST=FORGED)
    assert response.status_code == 400
    assert FORGED not in response.content.decode()


@override_settings(ALLOWED_HOSTS=["*"], PUBLIC_URL="https://batches.example.com")
def test_upload_urls_use_public_url_whatever_the_host(caller):
    response = caller.client.post("/cache", HTTP_HOST=FORGED)
    assert response.status_code == 201, response.content
    url = response.json()["url"]
    assert url.startswith("https://batches.example.com/uploads/")
    assert FORGED not in url


@override_settings(ALLOWED_HOSTS=["batches.internal"], PUBLIC_URL="")
def test_without_public_url_the_checked_host_is_used(caller):
    assert caller.client.post("/cache", HTTP_HOST=FORGED).status_code == 400
    url = caller.client.post("/cache", HTTP_HOST="batches.internal").json()["url"]
    assert url.startswith("http://batches.internal/uploads/")


def manage(*args, **environment):
    env = {key: value for key, value in os.environ.items() if key not in ("HTTPS", "DEBUG", "ALLOWED_HOSTS")}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_silent_with_https_on():
    done = manage(
        "check", "--deploy", "--fail-level", "WARNING", HTTPS="true", SECRET_KEY=secrets.token_urlsafe(50)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues (0 silenced)" in done.stdout


def test_check_deploy_warns_without_https():
    """The test above can fail: without the switch the same check names what is missing."""
    done = manage("check", "--deploy", SECRET_KEY=secrets.token_urlsafe(50))
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr + done.stdout


def test_a_wildcard_host_without_public_url_does_not_start():
    done = manage("check", ALLOWED_HOSTS="*", PUBLIC_URL="")
    assert done.returncode != 0
    assert "PUBLIC_URL" in done.stderr


def test_password_validators_refuse_a_weak_password(caller):
    from django.contrib.auth import get_user_model

    operator = get_user_model().objects.create_superuser("operator", password="not used here at all")
    browser = Client()
    browser.force_login(operator)
    page = browser.post(
        f"/admin/auth/user/{caller.user.pk}/password/",
        {"password1": "12345678", "password2": "12345678", "usable_password": "true"},
    )
    assert page.status_code == 200
    assert "This password is too short" in page.content.decode()
    caller.user.refresh_from_db()
    assert not caller.user.check_password("12345678")

"""Sign-in lockout for the pages (/ui/login) and the admin (/admin/login).

After LOGIN_FAILURE_LIMIT wrong passwords for one user id (or four times as many from one
client source, whatever the user ids), sign-in is refused for up to LOGIN_LOCKOUT_SECONDS from
the first failure, even with the right password, with a message saying so. Each attempt is
counted before the password is checked, in the shared counters (permissions.counters), so
parallel attempts cannot all read the same count: at most the limit are checked. A sign-in
that succeeds takes its attempt back from the source and clears the user id's count. The source
is the real client's (batchsite.clients.client_source).
"""

import hashlib

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from batchsite.clients import client_source
from permissions.counters import counter_clear, counter_hit, counter_release

SOURCE_FACTOR = 4


def attempt_keys(request, username: str) -> dict[str, int]:
    """The counters an attempt adds to, user id's first, each with the most it may reach."""
    user_key = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    limit = settings.LOGIN_FAILURE_LIMIT
    keys = {f"signin:user:{user_key}": limit}
    if request is not None:
        keys[f"signin:source:{client_source(request)}"] = limit * SOURCE_FACTOR
    return keys


def attempt_admitted(keys: dict[str, int]) -> bool:
    """Counts the attempt in every counter (the window opens at the first). A refused attempt
    checks no password, so it takes itself back: an office behind one address is not locked
    out by someone retrying a locked user id."""
    counts = {key: counter_hit(key, seconds=settings.LOGIN_LOCKOUT_SECONDS).count for key in keys}
    if all(counts[key] <= limit for key, limit in keys.items()):
        return True
    for key in keys:
        counter_release(key)
    return False


def attempt_succeeded(keys: dict[str, int]) -> None:
    user_key, *source_keys = keys
    counter_clear(user_key)
    for key in source_keys:
        counter_release(key)


class LockoutMixin:
    def clean(self):
        username = self.cleaned_data.get("username") or ""
        keys = attempt_keys(self.request, username)
        if username and not attempt_admitted(keys):
            minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
            raise forms.ValidationError(
                "Too many failed sign-ins for this user or from this address. "
                f"Sign-in is locked for up to {minutes} minutes; try again later.",
                code="locked_out",
            )
        cleaned = super().clean()
        if username:
            attempt_succeeded(keys)
        return cleaned


class SignInForm(LockoutMixin, AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "No user has this user id and password. The user id is a UUID such as "
        '0f8fad5b-d9cb-469f-a165-70867728950e (GET /whoami answers it as "user"), not your '
        "name; a password comes from `manage.py create_account --password` or `manage.py "
        "user_password`.",
    }


class AdminSignInForm(LockoutMixin, AdminAuthenticationForm):
    pass

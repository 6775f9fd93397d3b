"""Sign-in lockout for the pages (/ui/login) and the admin (/admin/login).

After LOGIN_FAILURE_LIMIT wrong passwords for one user id (or four times as many from one
client address, whatever the user ids), sign-in is refused for LOGIN_LOCKOUT_SECONDS, even
with the right password, with a message saying so. The counts live in the shared cache, so
every web process sees them; the address is the real client's (batchsite.clients.client_ip).
"""

import hashlib
import math
import time

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache

from batchsite.clients import client_ip

IP_FACTOR = 4


def failure_keys(request, username: str) -> dict[str, int]:
    """Each counter the attempt adds to, with the count that locks it."""
    user_key = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    limit = settings.LOGIN_FAILURE_LIMIT
    keys = {f"signin:user:{user_key}": limit}
    if request is not None:
        keys[f"signin:ip:{client_ip(request)}"] = limit * IP_FACTOR
    return keys


def counts_of(keys) -> dict[str, tuple[int, float]]:
    """Each key's (failures, end of its window). The window is kept in the value because a
    cache's incr() may reset the expiry (Django's database cache does)."""
    now = time.time()
    return {key: value for key, value in cache.get_many(list(keys)).items() if value[1] > now}


def is_locked_out(request, username: str) -> bool:
    keys = failure_keys(request, username)
    counts = counts_of(keys)
    return any(key in counts and counts[key][0] >= limit for key, limit in keys.items())


def record_failure(request, username: str) -> None:
    keys = failure_keys(request, username)
    counts = counts_of(keys)
    now = time.time()
    for key in keys:
        # The window starts at the first failure and does not move with later ones.
        failures, until = counts.get(key, (0, now + settings.LOGIN_LOCKOUT_SECONDS))
        cache.set(key, (failures + 1, until), timeout=max(1, math.ceil(until - now)))


def clear_failures(request, username: str) -> None:
    cache.delete(next(iter(failure_keys(request, username))))


class LockoutMixin:
    def clean(self):
        username = self.cleaned_data.get("username") or ""
        if username and is_locked_out(self.request, username):
            minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
            raise forms.ValidationError(
                "Too many failed sign-ins for this user or from this address. "
                f"Sign-in is locked for up to {minutes} minutes; try again later.",
                code="locked_out",
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError as error:
            if username and getattr(error, "code", None) == "invalid_login":
                record_failure(self.request, username)
            raise
        if username:
            clear_failures(self.request, username)
        return cleaned


class SignInForm(LockoutMixin, AuthenticationForm):
    pass


class AdminSignInForm(LockoutMixin, AdminAuthenticationForm):
    pass

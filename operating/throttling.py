"""Per-account API throttling on the shared cache, so every process counts into one window."""

import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from operating import logs, services

DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """ "6000/min" → (6000, 60); an empty rate → (0, 0), no throttling."""
    if not rate:
        return 0, 0
    count, _, period = rate.partition("/")
    return int(count), DURATIONS[period.strip()[:1]]


class AccountRateThrottle(BaseThrottle):
    """A fixed window per account: one atomic increment of a shared counter per request.

    Also marks the request as an API call of its account and user (it runs on every API
    view once the caller is authenticated and allowed), for usage and the log context."""

    wait_seconds: float | None = None

    def allow_request(self, request, view):
        user = request.user
        account_user = getattr(user, "account_user", None) if user is not None else None
        if account_user is None:
            return True
        logs.account_var.set(str(account_user.account_id))
        request._request.usage_caller = (account_user.account_id, account_user.uuid)
        limit, duration = parse_rate(settings.API_THROTTLE_RATE)
        if not limit:
            return True
        now = time.time()
        window = int(now // duration)
        key = f"throttle:{account_user.account_id}:{window}"
        count = self.count_in(key, timeout=duration + 5)
        if count <= limit:
            return True
        self.wait_seconds = max(1, math.ceil((window + 1) * duration - now))
        request._request.usage_caller = None
        services.refusal_count(account_id=account_user.account_id, quota="throttled")
        return False

    @staticmethod
    def count_in(key: str, *, timeout: int) -> int:
        """Adds this request to the window's counter: one increment, except for the window's
        first request, which creates the key (and, losing a race to create it, increments)."""
        try:
            return cache.incr(key)
        except ValueError:
            if cache.add(key, 1, timeout=timeout):
                return 1
            return cache.incr(key)

    def wait(self):
        return self.wait_seconds

"""Per-account API throttling on the shared counters, so every process counts into one window."""

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from batchsite import logs
from operating import services
from permissions.counters import rate_hit


class AccountRateThrottle(BaseThrottle):
    """A fixed window per account: one atomic hit of a shared counter per request.

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
        tally = rate_hit(f"api:{account_user.account_id}", rate=settings.API_THROTTLE_RATE)
        if not tally.over:
            return True
        self.wait_seconds = tally.retry_after
        request._request.usage_caller = None
        services.refusal_count(account_id=account_user.account_id, quota="throttled")
        return False

    def wait(self):
        return self.wait_seconds

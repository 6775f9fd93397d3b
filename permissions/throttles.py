"""Throttles for the PIN exchange, in the cache every process shares (CACHES): one keyed on the
real client (see batchsite.clients.client_ip), one on the account the PIN belongs to, so
neither a forged X-Forwarded-For nor many addresses get more tries at one account's PINs."""

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from batchsite.clients import client_ip


class RateFromSettings(SimpleRateThrottle):
    def get_rate(self):
        # Read when the throttle is made, not when the class is: overrides apply.
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]


class PinClientThrottle(RateFromSettings):
    scope = "secret_pin"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}


class PinAccountThrottle(RateFromSettings):
    scope = "secret_pin_account"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": str(view.kwargs.get("account", "")).lower()}

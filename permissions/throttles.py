"""The PIN exchange's throttle, on the shared counters (permissions.counters).

Tries are counted per source (batchsite.clients.client_source: the real client, so a forged
X-Forwarded-For buys nothing), per source at one account, and at one account from every
source. The account-wide count never locks the account: past its ceiling, a source gets only
its first try at that account in its window. So a guesser spread over many addresses gets one
guess per address, while the owner, from an address no outsider uses, still exchanges the PIN
on the first try; nobody else's wrong PINs can refuse it.

A PIN sent in a refused try is burnt (deleted): a PIN in the hands of a client past its limit
is spent, not merely delayed, so nobody exchanges it later from another address."""

from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from batchsite.clients import client_source
from permissions import services
from permissions.counters import rate_hit


class PinExchangeThrottle(BaseThrottle):
    wait_seconds: int | None = None

    def allow_request(self, request, view):
        rates = api_settings.DEFAULT_THROTTLE_RATES
        source = client_source(request)
        account = str(view.kwargs.get("account", "")).lower()
        source_try = rate_hit(f"pin:source:{source}", rate=rates.get("secret_pin"))
        if source_try.over:
            return self.refuse(view, source_try.retry_after)
        pair_try = rate_hit(f"pin:source-account:{source}:{account}", rate=rates.get("secret_pin_account"))
        if pair_try.over:
            return self.refuse(view, pair_try.retry_after)
        account_try = rate_hit(f"pin:account:{account}", rate=rates.get("secret_pin_account_ceiling"))
        if account_try.over and pair_try.count > 1:
            return self.refuse(view, min(account_try.retry_after, pair_try.retry_after))
        return True

    def refuse(self, view, retry_after: int) -> bool:
        self.wait_seconds = retry_after
        services.secret_pin_burn(account_uuid=view.kwargs["account"], pin=view.kwargs["pin"])
        return False

    def wait(self):
        return self.wait_seconds

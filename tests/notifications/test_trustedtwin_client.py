"""Trusted Twin's own client drives the four notification routes against a live server and
gets the codes and fields of its documented examples; the confirmation reaches a receiver on
127.0.0.1 and its URL is what the client's token routes take."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from trustedtwin.tt_api import TTRESTService

from notifications import services
from notifications.models import Subscription
from permissions.services import account_bootstrap

ERROR_FIELDS = {"subcode", "description", "trace"}
LINK_FIELDS = {"topic", "account", "validity_ts", "unsubscribe_url", "refresh_url"}


def answer(call) -> tuple[int, dict]:
    status, text = call
    return status, json.loads(text)


@pytest.fixture
def client(live_server):
    created = account_bootstrap(name="Hooks")
    return str(created.account.uuid), TTRESTService(tt_auth=created.secret, tt_base=live_server.url)


def test_subscribe_confirm_refresh_unsubscribe(client, live_server, settings, receivers):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    account, tt = client
    receiver = receivers()
    status, created = answer(
        tt.webhook_subscribe(
            body={"callback_url": receiver.url, "topic": "batches", "client_secret": 100, "expires": 120}
        )
    )
    assert status == 201, created
    assert set(created) == {"subscription", "callback_url", "server_secret"}
    assert set(created["subscription"]) == {"topic", "account", "validity_ts"}
    assert created["subscription"]["account"] == account
    assert created["callback_url"] == receiver.url

    subscription = Subscription.objects.get()
    assert services.lane_deliver(subscription_id=subscription.pk, batch_id=None) is None
    [confirmation] = receiver.received
    assert confirmation.signature_valid(created["server_secret"])
    assert confirmation.headers["X-Client-Secret"] == "100"
    link = urlsplit(confirmation.body["confirmation_url"])
    assert f"{link.scheme}://{link.netloc}" == live_server.url
    assert link.path == f"/notifications/webhooks/{account}"
    token = parse_qs(link.query)["token"][0]

    # The token is the credential: a client without a secret drives the rest.
    anonymous = TTRESTService(tt_base=live_server.url)
    status, confirmed = answer(anonymous.webhook_confirm_subscription(account, params={"token": token}))
    assert status == 200, confirmed
    assert set(confirmed) == LINK_FIELDS
    assert confirmed["unsubscribe_url"] == confirmed["refresh_url"] == confirmation.body["confirmation_url"]
    assert confirmed["validity_ts"] == created["subscription"]["validity_ts"]

    status, refreshed = answer(tt.webhook_refresh_subscription(account, params={"token": token}))
    assert status == 201, refreshed
    assert set(refreshed) == {"subscription", "callback_url"}
    assert set(refreshed["subscription"]) == LINK_FIELDS
    assert refreshed["callback_url"] == receiver.url
    assert refreshed["subscription"]["validity_ts"] >= confirmed["validity_ts"]

    status, ended = answer(anonymous.webhook_unsubscribe(account, params={"token": token}))
    assert status == 201, ended
    assert set(ended) == {"topic", "account", "validity_ts"}
    assert ended["topic"] == "batches" and ended["account"] == account

    for route in ("webhook_confirm_subscription", "webhook_refresh_subscription", "webhook_unsubscribe"):
        status, refused = answer(getattr(anonymous, route)(account, params={"token": token}))
        assert status == 404 and set(refused) == ERROR_FIELDS, (route, refused)


def test_private_callbacks_are_refused_without_the_setting(client, receivers):
    _, tt = client
    for callback_url in (receivers().url, "http://10.0.0.8/hook", "http://169.254.169.254/"):
        status, refused = answer(
            tt.webhook_subscribe(body={"callback_url": callback_url, "topic": "batches"})
        )
        assert status == 400 and refused["subcode"] == "callback_url_not_allowed", refused
        assert set(refused) == ERROR_FIELDS

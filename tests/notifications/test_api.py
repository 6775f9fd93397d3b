"""The four notification routes in process: shapes, codes, the action check, the token as
the only credential, and callback URLs refused by address."""

from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from notifications import callbacks, services
from notifications.models import Delivery, Event, Subscription
from tests.support.assertions import assert_error

pytestmark = pytest.mark.django_db
ROUTE = "/notifications/webhooks"


def subscribe(caller, callback_url: str, **extra):
    return caller.client.post(
        ROUTE, {"callback_url": callback_url, "topic": "batches", **extra}, format="json"
    )


def token_path(subscription: Subscription) -> str:
    url = urlsplit(services.subscription_url(subscription))
    return f"{url.path}?{url.query}"


@pytest.mark.parametrize(
    "callback_url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[2002:7f00:1::1]/hook",
        "http://[2002:a9fe:a9fe::1]/hook",
        "http://[2002:c0a8:1::1]/hook",
        "http://[fec0::1]/hook",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "not a url",
        "http://user:pass@127.0.0.1/hook",
    ],
)
def test_callbacks_on_private_addresses_or_other_schemes_are_refused(caller, callback_url):
    assert_error(subscribe(caller, callback_url), 400, "callback_url_not_allowed")
    assert not Subscription.objects.exists()


@pytest.mark.parametrize("address", ["2002:808:808::1", "2606:4700::1111", "8.8.8.8"])
def test_public_addresses_are_allowed_whatever_their_form(address):
    assert callbacks.address_is_public(address)


def test_subscribe_answers_the_documented_shape_and_queues_the_confirmation(caller, private_hosts):
    response = subscribe(caller, "http://127.0.0.1:9/hook", client_secret="mine", expires=120)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"subscription", "callback_url", "server_secret"}
    assert set(body["subscription"]) == {"topic", "account", "validity_ts"}
    assert body["subscription"]["topic"] == "batches"
    assert body["subscription"]["account"] == str(caller.account.pk)
    assert body["callback_url"] == "http://127.0.0.1:9/hook"
    assert len(body["server_secret"]) == 64
    subscription = Subscription.objects.get()
    assert subscription.validity_at.timestamp() == pytest.approx(
        body["subscription"]["validity_ts"], abs=0.01
    )
    assert subscription.created_at.timestamp() + 120 == pytest.approx(
        body["subscription"]["validity_ts"], abs=1
    )
    # Only the confirmation is waiting; the token is stored only as its digest.
    assert [event.name for event in Event.objects.all()] == ["subscription_confirmation"]
    assert services.token_for(subscription) not in str(Event.objects.get().body)
    assert subscription.token_digest == services.token_digest(services.token_for(subscription))


@pytest.mark.parametrize(
    ("extra", "subcode"),
    [
        ({"topic": "Batches"}, "invalid_topic"),
        ({"topic": "a" * 65}, "invalid_topic"),
        ({"client_secret": "x" * 257}, "max_length"),
        ({"client_secret": "line\nbreak"}, "invalid_client_secret"),
        ({"client_secret": "zażółć"}, "invalid_client_secret"),
        ({"expires": 0}, "min_value"),
        ({"callback_url": ""}, "invalid_input"),
    ],
)
def test_bad_input_is_400(caller, private_hosts, extra, subcode):
    body = {"callback_url": "http://127.0.0.1:9/hook", "topic": "batches", **extra}
    assert_error(caller.client.post(ROUTE, body, format="json"), 400, subcode)


def test_subscribing_needs_a_secret_and_the_action(make_caller, private_hosts):
    assert_error(APIClient().post(ROUTE, {}, format="json"), 401, "no_secret")
    limited = make_caller(statement={"effect": "deny", "actions": ["webhook_subscribe"]})
    assert_error(subscribe(limited, "http://127.0.0.1:9/hook"), 403, "action_not_allowed")
    allowed = make_caller(statement={"effect": "allow", "actions": ["webhook_subscribe", "get_batch"]})
    assert subscribe(allowed, "http://127.0.0.1:9/hook").status_code == 201


def test_token_routes_need_only_the_token(caller, stranger, private_hosts):
    subscribe(caller, "http://127.0.0.1:9/hook", expires=60)
    subscription = Subscription.objects.get()
    anonymous = APIClient()
    path = token_path(subscription)

    confirmed = anonymous.get(path)
    assert confirmed.status_code == 200, confirmed.content
    body = confirmed.json()
    assert set(body) == {"topic", "account", "validity_ts", "unsubscribe_url", "refresh_url"}
    assert body["unsubscribe_url"] == body["refresh_url"] == services.subscription_url(subscription)
    assert anonymous.get(path).status_code == 200, "confirming twice changes nothing"

    refreshed = anonymous.patch(path)
    assert refreshed.status_code == 201, refreshed.content
    assert set(refreshed.json()) == {"subscription", "callback_url"}
    assert set(refreshed.json()["subscription"]) == set(body)
    assert refreshed.json()["subscription"]["validity_ts"] >= body["validity_ts"]

    # A wrong token, another account in the path, no token: nothing is found or changed.
    wrong = path.replace("token=", "token=x")
    assert_error(anonymous.delete(wrong), 404, "not_found")
    assert_error(anonymous.delete(path.replace(str(caller.account.pk), str(stranger.account.pk))), 404)
    assert_error(anonymous.delete(path.split("?")[0]), 400, "invalid_input")
    assert_error(anonymous.get(path.replace(str(caller.account.pk), "not-a-uuid")), 404)

    ended = anonymous.delete(path)
    assert ended.status_code == 201, ended.content
    assert set(ended.json()) == {"topic", "account", "validity_ts"}
    for method in (anonymous.get, anonymous.patch, anonymous.delete):
        assert_error(method(path), 404, "not_found")


def test_subscribing_the_same_url_again_replaces_the_older_subscription(caller, private_hosts):
    subscribe(caller, "http://127.0.0.1:9/hook")
    older = Subscription.objects.get()
    subscribe(caller, "http://127.0.0.1:9/hook")
    older.refresh_from_db()
    assert older.unsubscribed_at is not None
    assert Subscription.objects.filter(unsubscribed_at__isnull=True).count() == 1
    assert Delivery.objects.get(subscription=older).state == "dropped"


def test_the_actions_are_in_the_catalogue_and_granted_to_full_roles(caller):
    from permissions.actions import ACTIONS

    for action in (
        "webhook_subscribe",
        "webhook_confirm_subscription",
        "webhook_unsubscribe",
        "webhook_refresh_subscription",
    ):
        assert action in ACTIONS
        assert caller.user.has_perm(action, caller.account)

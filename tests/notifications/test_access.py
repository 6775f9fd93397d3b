"""Who gets what from a subscription: only what its creator may read at the time of sending
(a creator who lost get_batch or was deleted gets nothing, and the subscription ends, token
included); the account's routes and admin action that list and end subscriptions; callback
URLs shown only to those who may manage subscriptions; the cap on live subscriptions."""

from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from notifications import services
from notifications.models import Delivery, Subscription
from permissions.services import role_update, user_delete
from tests.support.assertions import assert_error
from tests.support.inline_pipeline import run_batch
from tests.support.webhooks import confirm, deliver, subscribe, three_twins

pytestmark = pytest.mark.django_db
ROUTE = "/notifications/webhooks"
READER = ["webhook_subscribe", "get_batch"]
MANAGER = ["get_webhook_subscriptions", "delete_webhook_subscription"]


def token_path(subscription: Subscription) -> str:
    url = urlsplit(services.subscription_url(subscription))
    return f"{url.path}?{url.query}"


def subscribed_reader(make_caller, caller, receiver, statement_actions=READER):
    """A user of the caller's account allowed `statement_actions`, subscribed and confirmed."""
    reader = make_caller(account=caller.account, statement={"effect": "allow", "actions": statement_actions})
    subscription, _ = subscribe(reader, receiver)
    confirm(receiver, subscription)
    return reader, subscription


def test_subscribing_to_batches_needs_the_right_to_read_them(make_caller, private_hosts):
    blind = make_caller(statement={"effect": "allow", "actions": ["webhook_subscribe"]})
    response = blind.client.post(ROUTE, {"callback_url": "http://127.0.0.1:9/hook", "topic": "batches"})
    assert_error(response, 403, "action_not_allowed")
    assert not Subscription.objects.exists()


def test_a_creator_who_lost_get_batch_gets_nothing_more_and_the_subscription_ends(
    caller, make_caller, private_hosts, receivers
):
    receiver = receivers()
    reader, subscription = subscribed_reader(make_caller, caller, receiver)
    first = run_batch(three_twins(caller))
    assert deliver(subscription, first) is None
    assert [got.body["event"] for got in receiver.events()] == ["batch_processing", "batch_completed"]

    role_update(role=reader.role, statement={"effect": "allow", "actions": ["webhook_subscribe"]})
    second = run_batch(three_twins(caller))
    assert deliver(subscription, second) is None
    assert len(receiver.events()) == 2, "nothing of the second batch reached the receiver"
    subscription.refresh_from_db()
    assert subscription.unsubscribed_at is not None
    assert set(Delivery.objects.filter(batch_id=second.pk).values_list("state", flat=True)) == {"dropped"}
    assert_error(APIClient().patch(token_path(subscription)), 404, "not_found")


def test_a_deleted_creator_gets_nothing_and_the_token_no_longer_refreshes(
    caller, make_caller, private_hosts, receivers
):
    receiver = receivers()
    reader, subscription = subscribed_reader(make_caller, caller, receiver)
    user_delete(account_user=reader.account_user)

    assert_error(APIClient().patch(token_path(subscription)), 404, "not_found")
    batch = run_batch(three_twins(caller))
    assert deliver(subscription, batch) is None
    assert receiver.events() == []
    subscription.refresh_from_db()
    assert subscription.unsubscribed_at is not None


def test_the_account_lists_its_subscriptions_a_page_at_a_time_and_ends_one_without_its_token(
    caller, stranger, make_caller, private_hosts
):
    urls = [f"http://127.0.0.1:9/hook/{n}?key=k{n}" for n in range(3)]
    for url in urls:
        assert caller.client.post(ROUTE, {"callback_url": url, "topic": "batches"}).status_code == 201

    first = caller.client.get(ROUTE, {"limit": 2})
    assert first.status_code == 200, first.content
    second = caller.client.get(ROUTE, {"limit": 2, "cursor": first.json()["cursor"]})
    assert second.json()["cursor"] is None
    listed = first.json()["subscriptions"] + second.json()["subscriptions"]
    assert [item["callback_url"] for item in listed] == urls[::-1]
    assert set(listed[0]) == {
        "subscription",
        "topic",
        "callback_url",
        "state",
        "created_by",
        "created_ts",
        "validity_ts",
    }
    assert {item["state"] for item in listed} == {"pending"}
    assert {item["created_by"] for item in listed} == {str(caller.account_user.pk)}
    assert stranger.client.get(ROUTE).json()["subscriptions"] == []
    assert_error(caller.client.get(ROUTE, {"cursor": "bm90LWEtY3Vyc29yLXJlYWxseQ=="}), 400, "invalid_cursor")

    ended_id = listed[0]["subscription"]
    path = f"{ROUTE}/subscriptions/{ended_id}"
    assert_error(stranger.client.delete(path), 404, "not_found")
    assert_error(caller.client.delete(f"{ROUTE}/subscriptions/not-a-uuid"), 404, "not_found")
    ended = caller.client.delete(path)
    assert ended.status_code == 200, ended.content
    assert ended.json()["state"] == "unsubscribed"
    assert caller.client.delete(path).json()["state"] == "unsubscribed", "ending twice changes nothing"
    assert_error(APIClient().get(token_path(Subscription.objects.get(pk=ended_id))), 404, "not_found")

    subscriber_only = make_caller(
        account=caller.account, statement={"effect": "allow", "actions": ["webhook_subscribe", "get_batch"]}
    )
    assert_error(subscriber_only.client.get(ROUTE), 403, "action_not_allowed")
    assert_error(subscriber_only.client.delete(f"{ROUTE}/subscriptions/{listed[1]['subscription']}"), 403)


def test_callback_urls_on_the_batch_page_only_for_those_who_manage_subscriptions(
    caller, make_caller, private_hosts, receivers
):
    receiver = receivers()
    subscription, _ = subscribe(caller, receiver)
    confirm(receiver, subscription)
    batch = run_batch(three_twins(caller))
    deliver(subscription, batch)

    def page_for(user) -> bytes:
        client = Client()
        client.force_login(user)
        page = client.get(reverse("batch_page", args=[batch.pk]))
        assert page.status_code == 200
        return page.content

    reader = make_caller(account=caller.account, statement={"effect": "allow", "actions": ["get_batch"]})
    assert receiver.url.encode() not in page_for(reader.user)
    assert b"batch_completed" in page_for(reader.user)
    manager = make_caller(
        account=caller.account, statement={"effect": "allow", "actions": ["get_batch", *MANAGER]}
    )
    assert receiver.url.encode() in page_for(manager.user)


def test_an_account_holds_at_most_the_set_number_of_live_subscriptions(caller, private_hosts, settings):
    settings.WEBHOOK_MAX_SUBSCRIPTIONS_PER_ACCOUNT = 2
    for n in range(2):
        assert (
            caller.client.post(
                ROUTE, {"callback_url": f"http://127.0.0.1:9/{n}", "topic": "batches"}
            ).status_code
            == 201
        )
    third = {"callback_url": "http://127.0.0.1:9/2", "topic": "batches"}
    assert_error(caller.client.post(ROUTE, third), 409, "too_many_subscriptions")
    again = {"callback_url": "http://127.0.0.1:9/0", "topic": "batches"}
    assert caller.client.post(ROUTE, again).status_code == 201, "replacing one is not one more"
    oldest = Subscription.objects.filter(unsubscribed_at__isnull=True).order_by("created_at").first()
    assert caller.client.delete(f"{ROUTE}/subscriptions/{oldest.pk}").status_code == 200
    assert caller.client.post(ROUTE, third).status_code == 201


def test_staff_end_subscriptions_from_the_admin(caller, private_hosts, admin_client):
    caller.client.post(ROUTE, {"callback_url": "http://127.0.0.1:9/hook", "topic": "batches"})
    subscription = Subscription.objects.get()
    response = admin_client.post(
        reverse("admin:notifications_subscription_changelist"),
        {"action": "end_subscriptions", "_selected_action": [subscription.pk]},
        follow=True,
    )
    assert b"1 ended." in response.content
    subscription.refresh_from_db()
    assert subscription.unsubscribed_at is not None
    assert Delivery.objects.get(subscription=subscription).state == "dropped"


def test_an_empty_cursor_is_refused_as_the_schema_says(caller):
    response = caller.client.get("/notifications/webhooks?cursor=")
    assert_error(response, 400, "invalid_input")


def test_the_schema_documents_the_subscription_cap_refusal():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert "409" in schema["paths"][ROUTE]["post"]["responses"]

"""The steps of a webhook subscriber: subscribing through the API, confirming as a receiver
does, and the delivery of a batch's events to it."""

from urllib.parse import urlsplit

from rest_framework.test import APIClient

from notifications import services
from notifications.models import Delivery, Subscription
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory


def subscribe(caller, receiver, **extra) -> tuple[Subscription, str]:
    response = caller.client.post(
        "/notifications/webhooks", {"callback_url": receiver.url, "topic": "batches", **extra}, format="json"
    )
    assert response.status_code == 201, response.content
    subscription = Subscription.objects.get(callback_url=receiver.url, unsubscribed_at__isnull=True)
    return subscription, response.json()["server_secret"]


def confirm(receiver, subscription):
    """Sends the confirmation and fetches its URL, as the subscriber does."""
    assert services.lane_deliver(subscription_id=subscription.pk, batch_id=None) is None
    confirmation = receiver.received[-1].body
    url = urlsplit(confirmation["confirmation_url"])
    assert APIClient().get(f"{url.path}?{url.query}").status_code == 200


def deliver(subscription, batch) -> Delivery | None:
    return services.lane_deliver(subscription_id=subscription.pk, batch_id=batch.pk)


def three_twins(caller):
    """A batch of three create_twin lines, not yet run."""
    return BatchFactory(caller=caller, content=jsonl({"description": {"n": n}} for n in range(3)))

"""Reads for notifications."""

import uuid
from dataclasses import dataclass

from django.http import Http404

from batchsite.paging import cursor_encode, rows_after
from notifications.models import Delivery, Subscription
from notifications.services import token_digest
from permissions.models import Account


def subscription_by_token(*, account: str, token: str) -> Subscription:
    """The live subscription the token belongs to; the token is the only credential, and
    an unknown, other account's or unsubscribed one is 404 alike."""
    try:
        account_id = uuid.UUID(account)
    except ValueError:
        raise Http404("No subscription with this token.") from None
    found = Subscription.objects.filter(
        account_id=account_id, token_digest=token_digest(token), unsubscribed_at__isnull=True
    ).first()
    if found is None:
        raise Http404("No subscription with this token.")
    return found


def deliveries_of_batch(*, batch_id) -> list[Delivery]:
    """Every delivery of the batch's events, oldest first, for the batch's pages."""
    return list(
        Delivery.objects.filter(event__batch_id=batch_id)
        .select_related("event", "subscription")
        .order_by("pk")
    )


@dataclass(frozen=True)
class SubscriptionPage:
    subscriptions: list[Subscription]
    cursor: str | None


def subscription_list(*, account: Account, cursor: str | None = None, limit: int) -> SubscriptionPage:
    """The account's subscriptions, ended ones included, newest first, a page at a time."""
    subscriptions = Subscription.objects.filter(account=account).order_by("-created_at", "-uuid")
    if cursor:
        subscriptions = subscriptions.filter(rows_after(cursor))
    rows = list(subscriptions.select_related("created_by")[: limit + 1])
    page = rows[:limit]
    return SubscriptionPage(subscriptions=page, cursor=cursor_encode(page[-1]) if len(rows) > limit else None)


def subscription_get(*, account: Account, subscription_id) -> Subscription:
    try:
        found = Subscription.objects.filter(account=account, uuid=uuid.UUID(str(subscription_id))).first()
    except ValueError:
        found = None
    if found is None:
        raise Http404("No such subscription.")
    return found

"""Reads for notifications."""

import uuid

from django.http import Http404

from notifications.models import Delivery, Subscription
from notifications.services import token_digest


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

"""Writes for notifications: subscriptions through their life (subscribe, confirm, refresh,
unsubscribe) and the delivery of the outbox, one lane (subscription, batch) at a time."""

import hashlib
import hmac
import json
import random
import secrets
import time
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone

from batchsite.errors import ApplicationError
from batchsite.signals import delivery_attempted
from notifications.callbacks import callback_url_check, post
from notifications.models import Delivery, DeliveryAttempt, DeliveryState, Event, Subscription
from notifications.outbox import deliver_after_commit, retry_until
from permissions.models import Account, AccountUser

EXPIRES_DEFAULT_SECONDS = 30 * 24 * 3600
EXPIRES_MAX_SECONDS = 365 * 24 * 3600
# A claim outlasts a try (WEBHOOK_TIMEOUT_SECONDS in all, and the few queries around it), so
# no delivery is ever sent by two workers at once; past it, a crashed worker's try is taken over.
LEASE_MARGIN_SECONDS = 10
# A try over the account's or the host's cap of tries at once waits this long (plus up to half
# again, so deferred lanes do not come back in step).
DEFER_SECONDS = 1.0
# What a subscription's creator must hold for the events of a topic to reach them.
TOPIC_READ_ACTIONS = {"batches": "get_batch"}


def token_for(subscription: Subscription) -> str:
    mac = hmac.new(
        settings.SECRET_KEY.encode(), f"webhook-token:{subscription.token_salt}".encode(), hashlib.sha256
    )
    return urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def subscription_url(subscription: Subscription, token: str | None = None) -> str:
    """The confirmation, unsubscribe and refresh URL (one URL, three methods)."""
    query = urlencode({"token": token or token_for(subscription)})
    return f"{subscription.base_url.rstrip('/')}/notifications/webhooks/{subscription.account_id}?{query}"


@dataclass(frozen=True)
class CreatedSubscription:
    subscription: Subscription


def subscription_create(
    *,
    account: Account,
    created_by: AccountUser | None,
    callback_url: str,
    topic: str,
    client_secret: str = "",
    expires: int | None = None,
    base_url: str,
) -> Subscription:
    """A pending subscription and its confirmation message, sent after commit. The same
    callback URL subscribed again to the same topic replaces the older subscription. Its
    creator must be able to read what the topic sends."""
    action = TOPIC_READ_ACTIONS.get(topic)
    if action and not (created_by and created_by.user.has_perm(action, account)):
        raise PermissionDenied(f"The role does not allow {action}, which the {topic} topic's events need.")
    callback_url_check(callback_url)  # resolves the host: not inside the transaction
    with transaction.atomic():
        return subscription_create_checked(
            account=account,
            created_by=created_by,
            callback_url=callback_url,
            topic=topic,
            client_secret=client_secret,
            expires=expires,
            base_url=base_url,
        )


class TooManySubscriptions(ApplicationError):
    def __init__(self, limit: int):
        super().__init__(
            f"The account holds {limit} live webhook subscriptions, the most it may; end one first "
            "(DELETE /notifications/webhooks/subscriptions/{subscription}).",
            subcode="too_many_subscriptions",
            status_code=409,
        )


def subscription_create_checked(
    *, account, created_by, callback_url, topic, client_secret, expires, base_url
) -> Subscription:
    # The account's row serialises its subscribes, so two at once cannot both pass the cap.
    Account.objects.select_for_update().filter(pk=account.pk).first()
    now = timezone.now()
    expires = expires or EXPIRES_DEFAULT_SECONDS
    replaced = Subscription.objects.filter(
        account=account, topic=topic, callback_url=callback_url, unsubscribed_at__isnull=True
    )
    live = Subscription.objects.filter(account=account, unsubscribed_at__isnull=True, validity_at__gt=now)
    limit = settings.WEBHOOK_MAX_SUBSCRIPTIONS_PER_ACCOUNT
    if live.exclude(pk__in=replaced.values("pk")).count() >= limit:
        raise TooManySubscriptions(limit)
    for older in replaced.select_for_update():
        subscription_end(subscription=older, now=now)
    subscription = Subscription(
        account=account,
        created_by=created_by,
        topic=topic,
        callback_url=callback_url,
        callback_host=(urlsplit(callback_url).hostname or "")[:255],
        client_secret=client_secret or "",
        server_secret=secrets.token_hex(32),
        token_salt=secrets.token_hex(16),
        base_url=base_url,
        expires_seconds=expires,
        validity_at=now + timedelta(seconds=expires),
    )
    subscription.token_digest = token_digest(token_for(subscription))
    subscription.save()
    event = Event.objects.create(
        account=account,
        topic=topic,
        name=Event.CONFIRMATION,
        body={"type": Event.CONFIRMATION, "topic": topic, "account": str(account.pk)},
    )
    Delivery.objects.create(
        event=event,
        subscription=subscription,
        batch_id=None,
        next_attempt_at=now,
        retry_until=retry_until(now),
    )
    deliver_after_commit(subscription_ids=[subscription.pk], batch_id=None)
    return subscription


def subscription_live_check(*, subscription: Subscription) -> None:
    """A token route on a subscription whose creator may no longer read its events ends it
    (a token alone never keeps one alive) and answers 404 like any ended subscription."""
    if not creator_may_receive(subscription):
        with transaction.atomic():
            subscription_end(subscription=subscription, now=timezone.now())
        raise Http404("No subscription with this token.")


@transaction.atomic
def subscription_confirm(*, subscription: Subscription) -> Subscription:
    if subscription.confirmed_at is None:
        Subscription.objects.filter(pk=subscription.pk, confirmed_at__isnull=True).update(
            confirmed_at=timezone.now(), updated_at=timezone.now()
        )
        subscription.refresh_from_db()
    return subscription


@transaction.atomic
def subscription_refresh(*, subscription: Subscription) -> Subscription:
    """Valid for its `expires` seconds again, counted from now."""
    now = timezone.now()
    Subscription.objects.filter(pk=subscription.pk).update(
        validity_at=now + timedelta(seconds=subscription.expires_seconds), updated_at=now
    )
    subscription.refresh_from_db()
    return subscription


@transaction.atomic
def subscription_unsubscribe(*, subscription: Subscription) -> Subscription:
    subscription_end(subscription=subscription, now=timezone.now())
    subscription.refresh_from_db()
    return subscription


def subscription_end(*, subscription: Subscription, now) -> None:
    """Nothing more is sent: the token stops working and pending deliveries are dropped."""
    Subscription.objects.filter(pk=subscription.pk, unsubscribed_at__isnull=True).update(
        unsubscribed_at=now, updated_at=now
    )
    Delivery.objects.filter(subscription=subscription, state=DeliveryState.PENDING).update(
        state=DeliveryState.DROPPED, leased_until=None
    )


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling from the first
    delay up to the largest, with up to 10 % added so that retries do not come in waves."""
    first = settings.WEBHOOK_RETRY_FIRST_DELAY_SECONDS
    delay = min(first * 2 ** max(attempts - 1, 0), settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS)
    return delay * (1 + random.random() / 10)


def is_deliverable(delivery: Delivery, now) -> bool:
    subscription = delivery.subscription
    if subscription.unsubscribed_at is not None or subscription.validity_at <= now:
        return False
    return delivery.event.name == Event.CONFIRMATION or subscription.confirmed_at is not None


def creator_may_receive(subscription: Subscription) -> bool:
    """Whether the subscription's creator, as they are now, may read what its topic sends: a
    subscription carries no rights of its own. A deleted or deactivated creator may not."""
    creator = subscription.created_by
    if creator is None or not creator.user.is_active:
        return False
    action = TOPIC_READ_ACTIONS.get(subscription.topic)
    return action is None or creator.user.has_perm(action, subscription.account)


def tries_at_capacity(subscription: Subscription, now) -> bool:
    """Whether the account or the receiver host already has as many tries in flight as it may.
    Must run in the claim's transaction: it locks the live subscriptions of both, so claims that
    share either take turns and a cap cannot be passed by two claims at once."""
    same_account_or_host = Q(account_id=subscription.account_id) | Q(callback_host=subscription.callback_host)
    list(
        Subscription.objects.select_for_update()
        .filter(same_account_or_host, unsubscribed_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    in_flight = Delivery.objects.filter(state=DeliveryState.PENDING, leased_until__gt=now)
    per_account = in_flight.filter(subscription__account_id=subscription.account_id).count()
    if per_account >= settings.WEBHOOK_MAX_CONCURRENT_PER_ACCOUNT:
        return True
    per_host = in_flight.filter(subscription__callback_host=subscription.callback_host).count()
    return per_host >= settings.WEBHOOK_MAX_CONCURRENT_PER_HOST


def lane_of(*, subscription_id, batch_id):
    lane = Delivery.objects.filter(subscription_id=subscription_id, state=DeliveryState.PENDING)
    return lane.filter(batch_id=batch_id) if batch_id else lane.filter(batch_id__isnull=True)


def delivery_claim_next(*, subscription_id, batch_id) -> Delivery | None:
    """The first pending delivery of the lane, if it is due, nobody is sending it and neither
    its account nor its receiver host is at its cap of tries at once (then it waits a moment);
    later events of the lane wait until it is delivered, failed for good or dropped. A
    subscription whose creator may no longer read its events ends here."""
    lane = lane_of(subscription_id=subscription_id, batch_id=batch_id)
    while True:
        now = timezone.now()
        head = lane.select_related("subscription__created_by__user", "event").order_by("pk").first()
        if head is None:
            return None
        if not creator_may_receive(head.subscription):
            with transaction.atomic():
                subscription_end(subscription=head.subscription, now=now)
            continue
        if not is_deliverable(head, now):
            Delivery.objects.filter(pk=head.pk, state=DeliveryState.PENDING).update(
                state=DeliveryState.DROPPED, leased_until=None
            )
            continue
        if head.next_attempt_at > now or (head.leased_until and head.leased_until > now):
            return None
        return delivery_claim(head, now)


def delivery_claim(head: Delivery, now) -> Delivery | None:
    """The claim itself: the delivery is this try's until its lease ends, or it is deferred."""
    unchanged = Delivery.objects.filter(pk=head.pk, state=DeliveryState.PENDING, attempts=head.attempts)
    with transaction.atomic():
        if tries_at_capacity(head.subscription, now):
            unchanged.filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now)).update(
                next_attempt_at=now + timedelta(seconds=DEFER_SECONDS * (1 + random.random() / 2))
            )
            return None
        lease = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS)
        claimed = unchanged.update(leased_until=lease, attempts=F("attempts") + 1)
    if claimed != 1:
        return None
    head.attempts += 1
    head.leased_until = lease
    return head


def delivery_body(delivery: Delivery) -> bytes:
    body = delivery.event.body
    if delivery.event.name == Event.CONFIRMATION:
        body = {**body, "confirmation_url": subscription_url(delivery.subscription)}
    return json.dumps(body, separators=(",", ":")).encode()


def signature(*, server_secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(server_secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def delivery_headers(delivery: Delivery, body: bytes) -> dict:
    timestamp = int(time.time())
    subscription = delivery.subscription
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "batch-service-webhooks/1",
        "X-Webhook-Id": str(delivery.event.event_id),
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": signature(
            server_secret=subscription.server_secret, timestamp=timestamp, body=body
        ),
    }
    if subscription.client_secret:
        headers["X-Client-Secret"] = subscription.client_secret
    return headers


def delivery_send(delivery: Delivery) -> Delivery:
    """One try of a claimed delivery, recorded as an attempt; the delivery is then delivered,
    pending with its next try, or failed once the retry window has closed."""
    body = delivery_body(delivery)
    attempted_at = timezone.now()
    outcome = post(delivery.subscription.callback_url, body=body, headers=delivery_headers(delivery, body))
    now = timezone.now()
    changes = {"leased_until": None, "last_status_code": outcome.status_code}
    next_attempt_at = None
    if outcome.delivered:
        changes.update(state=DeliveryState.DELIVERED, delivered_at=now)
        attempt_outcome = "delivered"
    else:
        next_attempt_at = now + timedelta(seconds=retry_delay(delivery.attempts))
        if next_attempt_at > delivery.retry_until:
            next_attempt_at = None
            changes.update(state=DeliveryState.FAILED)
            attempt_outcome = "failed"
        else:
            changes.update(next_attempt_at=next_attempt_at)
            attempt_outcome = "retrying"
    with transaction.atomic():
        # Only while the claim is still this one's: every claim counts an attempt, so a try
        # that outlived its lease (a frozen worker) never records over a newer claim's.
        recorded = Delivery.objects.filter(
            pk=delivery.pk, state=DeliveryState.PENDING, attempts=delivery.attempts
        ).update(**changes)
        DeliveryAttempt.objects.create(
            delivery=delivery,
            at=attempted_at,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            error=outcome.error if recorded else f"{outcome.error} (claim lost, not counted)".lstrip(),
            response_excerpt=outcome.excerpt,
            next_attempt_at=next_attempt_at if recorded else None,
        )
    if recorded:
        delivery_attempted.send(sender=Delivery, outcome=attempt_outcome)
    delivery.refresh_from_db()
    return delivery


def lane_deliver(*, subscription_id, batch_id) -> Delivery | None:
    """Sends the lane's due deliveries in order and stops at the first one that cannot go
    now (not due, being sent elsewhere, or just failed); returns it, or None when nothing in
    the lane is pending."""
    while True:
        delivery = delivery_claim_next(subscription_id=subscription_id, batch_id=batch_id)
        if delivery is None:
            return lane_of(subscription_id=subscription_id, batch_id=batch_id).order_by("pk").first()
        delivery_send(delivery)


def deliveries_redeliver(*, deliveries) -> int:
    """Admin: send these again now, under the same event_id, even if they went out or failed
    for good; a dropped one (its subscription ended) stays dropped."""
    now = timezone.now()
    pks = [delivery.pk for delivery in deliveries if delivery.state != DeliveryState.DROPPED]
    with transaction.atomic():
        # A try in flight keeps its lease: the delivery is never sent by two workers at once.
        count = Delivery.objects.filter(pk__in=pks).update(
            state=DeliveryState.PENDING, next_attempt_at=now, retry_until=retry_until(now)
        )
        for lane in (
            Delivery.objects.filter(pk__in=pks).values("subscription_id", "batch_id").order_by().distinct()
        ):
            deliver_after_commit(subscription_ids=[lane["subscription_id"]], batch_id=lane["batch_id"])
    return count


def lanes_due(*, now, grace_seconds: float, limit: int = 1000) -> list[tuple]:
    """Lanes with a delivery due for a while that nobody is sending: what a lost task, a
    killed worker or a long retry delay left behind."""
    due = Delivery.objects.filter(
        state=DeliveryState.PENDING, next_attempt_at__lte=now - timedelta(seconds=grace_seconds)
    ).filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))
    return list(due.values_list("subscription_id", "batch_id").order_by().distinct()[:limit])


def events_expire(*, now) -> int:
    """Events past retention whose deliveries are all settled."""
    old = Event.objects.filter(
        created_at__lt=now - timedelta(days=settings.WEBHOOK_EVENT_RETENTION_DAYS)
    ).exclude(deliveries__state=DeliveryState.PENDING)
    pks = list(old.values_list("pk", flat=True)[:10_000])
    return Event.objects.filter(pk__in=pks).delete()[1].get("notifications.Event", 0)

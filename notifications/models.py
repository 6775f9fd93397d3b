"""Webhook subscriptions (Trusted Twin's notification routes) and the outbox of their events.

An `Event` is written in the same transaction as the batch transition it reports, with one
`Delivery` per subscription that was active then; workers deliver them at least once, and
each try is kept as a `DeliveryAttempt` for the admin.
"""

import uuid

from django.db import models

from permissions.models import Account, AccountUser


class Subscription(models.Model):
    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="webhook_subscriptions")
    created_by = models.ForeignKey(AccountUser, on_delete=models.SET_NULL, null=True, blank=True)
    topic = models.CharField(max_length=64)
    callback_url = models.URLField(max_length=2000)
    # The callback URL's host name, lower case: tries at once are capped per receiver host.
    callback_host = models.CharField(max_length=255, blank=True, default="")
    # Sent back as X-Client-Secret so the receiver knows the sender; empty when not given.
    client_secret = models.CharField(max_length=256, blank=True)
    # The HMAC key of X-Webhook-Signature; the service must sign with it, so it is kept.
    server_secret = models.CharField(max_length=128)
    # The token of the confirmation, unsubscribe and refresh URLs is derived from SECRET_KEY
    # and this salt (so the confirmation can be sent again); only its SHA-256 is looked up.
    token_salt = models.CharField(max_length=64)
    token_digest = models.CharField(max_length=64, unique=True)
    # The API root the subscriber called, for the URLs in the confirmation message.
    base_url = models.CharField(max_length=2000)
    expires_seconds = models.PositiveIntegerField()
    validity_at = models.DateTimeField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["account", "topic"], name="subscription_account_topic"),
            models.Index(fields=["callback_host"], name="subscription_host"),
        ]

    def __str__(self):
        return f"{self.topic} → {self.callback_url}"

    def state(self, now) -> str:
        if self.unsubscribed_at:
            return "unsubscribed"
        if self.validity_at <= now:
            return "expired"
        return "active" if self.confirmed_at else "pending"


class Event(models.Model):
    """One event of a topic (or a subscription's confirmation message). `body` is what is
    POSTed, but for a confirmation, whose `confirmation_url` is added when it is sent."""

    CONFIRMATION = "subscription_confirmation"

    # The integer key orders events; `event_id` is the public id (X-Webhook-Id).
    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="webhook_events")
    topic = models.CharField(max_length=64)
    name = models.CharField(max_length=64)
    # Not a foreign key: the event outlives a deleted batch.
    batch_id = models.UUIDField(null=True, blank=True)
    body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["batch_id"], name="event_batch")]

    def __str__(self):
        return f"{self.name} {self.event_id}"


class DeliveryState(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    # Every try failed until the retry window closed.
    FAILED = "failed"
    # The subscription ended (unsubscribed, expired) before the event got out.
    DROPPED = "dropped"


class Delivery(models.Model):
    """One event for one subscription. A subscription receives one batch's events in the
    order of their keys: the lowest pending delivery of a (subscription, batch) lane goes
    first."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    # Copied from the event: the lane of the ordering rule (null for the confirmation).
    batch_id = models.UUIDField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # Tries stop after this (WEBHOOK_RETRY_FOR_SECONDS after the event, or after a redeliver).
    retry_until = models.DateTimeField()
    # A worker sending it holds it until then (longer than a try may last); past it, a crashed
    # worker's try is taken over.
    leased_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["subscription", "batch_id", "state"], name="delivery_lane"),
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["state", "leased_until"], name="delivery_leased"),
        ]

    def __str__(self):
        return f"{self.event} → {self.subscription.callback_url}"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # Why it failed when there was no answer (refused host, timeout, connection error).
    error = models.TextField(blank=True)
    # The start of the answer's body, for whoever looks into a failure.
    response_excerpt = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error[:40]}"

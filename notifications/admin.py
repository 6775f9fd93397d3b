"""Staff admin for webhooks: subscriptions, events and each delivery with its attempts
(time, status code, latency, next try). The writes are "Redeliver" and "End selected
subscriptions", through their services."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from batchsite.admin import ReadOnly, UuidSearch
from notifications import services
from notifications.models import Delivery, DeliveryAttempt, Event, Subscription


@admin.action(description="End selected subscriptions")
def end_subscriptions(modeladmin, request, queryset):
    live = list(queryset.filter(unsubscribed_at__isnull=True))
    for subscription in live:
        services.subscription_unsubscribe(subscription=subscription)
    modeladmin.message_user(request, f"{len(live)} ended.", messages.SUCCESS if live else messages.WARNING)


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnly, UuidSearch, admin.ModelAdmin):
    list_display = ["callback_url", "topic", "account", "state", "validity_at", "confirmed_at", "created_at"]
    list_filter = ["topic", "account"]
    list_select_related = ["account"]
    search_fields = ["callback_url"]
    uuid_search_fields = ("uuid", "account__uuid")
    # The secrets and the token digest stay out of the page.
    fields = readonly_fields = [
        "uuid",
        "account",
        "created_by",
        "topic",
        "callback_url",
        "state",
        "expires_seconds",
        "validity_at",
        "confirmed_at",
        "unsubscribed_at",
        "created_at",
        "updated_at",
    ]
    actions = [end_subscriptions]

    @admin.display(description="state")
    def state(self, subscription):
        return subscription.state(timezone.now())


class DeliveryAttemptInline(ReadOnly, admin.TabularInline):
    model = DeliveryAttempt
    verbose_name = "attempt"
    fields = readonly_fields = [
        "at",
        "status_code",
        "latency_ms",
        "next_attempt_at",
        "error",
        "response_excerpt",
    ]
    extra = 0


class EventDeliveryInline(ReadOnly, admin.TabularInline):
    model = Delivery
    fields = readonly_fields = [
        "delivery",
        "subscription",
        "state",
        "attempts",
        "last_status_code",
        "next_attempt_at",
    ]
    extra = 0

    @admin.display(description="delivery")
    def delivery(self, delivery):
        url = reverse("admin:notifications_delivery_change", args=[delivery.pk])
        return format_html('<a href="{}">attempts</a>', url)


@admin.register(Event)
class EventAdmin(ReadOnly, UuidSearch, admin.ModelAdmin):
    list_display = ["name", "event_id", "batch_id", "account", "created_at"]
    list_filter = ["name", "topic"]
    list_select_related = ["account"]
    uuid_search_fields = ("event_id", "batch_id", "account__uuid")
    search_help_text = "An event, batch or account id."
    fields = readonly_fields = ["event_id", "account", "topic", "name", "batch_id", "body", "created_at"]
    inlines = [EventDeliveryInline]
    date_hierarchy = "created_at"


@admin.action(description="Redeliver selected deliveries (same event_id)")
def redeliver(modeladmin, request, queryset):
    count = services.deliveries_redeliver(deliveries=list(queryset))
    skipped = queryset.count() - count
    message = f"{count} queued again."
    if skipped:
        message += f" {skipped} skipped: their subscription ended."
    modeladmin.message_user(request, message, messages.SUCCESS if count else messages.WARNING)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly, admin.ModelAdmin):
    list_display = [
        "event_name",
        "event_uuid",
        "callback_url",
        "state",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["state", "event__name"]
    list_select_related = ["event", "subscription"]
    search_fields = ["subscription__callback_url"]
    fields = readonly_fields = [
        "event",
        "event_uuid",
        "subscription",
        "callback_url",
        "batch_id",
        "state",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "retry_until",
        "delivered_at",
        "created_at",
    ]
    inlines = [DeliveryAttemptInline]
    actions = [redeliver]

    @admin.display(description="event")
    def event_name(self, delivery):
        return delivery.event.name

    @admin.display(description="event_id")
    def event_uuid(self, delivery):
        return delivery.event.event_id

    @admin.display(description="callback URL")
    def callback_url(self, delivery):
        return delivery.subscription.callback_url

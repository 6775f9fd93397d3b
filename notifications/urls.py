from django.urls import path

from notifications import apis

urlpatterns = [
    path("notifications/webhooks", apis.WebhooksApi.as_view(), name="webhook_subscribe"),
    path("notifications/webhooks/<str:account>", apis.WebhookTokenApi.as_view(), name="webhook_token"),
    path(
        "notifications/webhooks/subscriptions/<str:subscription>",
        apis.WebhookSubscriptionApi.as_view(),
        name="webhook_subscription",
    ),
]

"""Operating's listeners to the other apps' signals, connected in `OperatingConfig.ready()`."""

from notifications.signals import delivery_attempted
from operating import metrics


def webhook_delivery_count(sender, outcome: str, **kwargs) -> None:
    metrics.webhook_deliveries.labels(outcome).inc()


def connect() -> None:
    delivery_attempted.connect(webhook_delivery_count, dispatch_uid="operating.webhook_delivery_count")

"""Celery entry points of webhook delivery: one lane (a subscription and one batch's events)
per task, and beat's sweep that re-queues whatever is due and nobody is sending. Both run on
the `webhooks` queue (settings' CELERY_TASK_ROUTES), apart from the pipeline's workers."""

from django.conf import settings
from django.utils import timezone

from batchsite.task_decorator import pipeline_task
from notifications import services


@pipeline_task()
def webhook_deliver(subscription_id: str, batch_id: str | None = None) -> None:
    waiting = services.lane_deliver(subscription_id=subscription_id, batch_id=batch_id)
    now = timezone.now()
    if waiting is None or (waiting.leased_until and waiting.leased_until > now):
        return  # done, or another worker is sending it
    delay = (waiting.next_attempt_at - now).total_seconds()
    # Short waits are queued with a countdown; longer ones are left to the sweep, so no
    # broker holds a message for hours.
    if 0 < delay <= settings.WEBHOOK_SWEEP_INTERVAL_SECONDS * 6:
        webhook_deliver.apply_async(args=[subscription_id, batch_id], countdown=max(delay, 0))


@pipeline_task()
def webhooks_sweep() -> dict:
    now = timezone.now()
    lanes = services.lanes_due(now=now, grace_seconds=settings.WEBHOOK_SWEEP_INTERVAL_SECONDS)
    for subscription_id, batch_id in lanes:
        webhook_deliver.apply_async(args=[str(subscription_id), str(batch_id) if batch_id else None])
    return {"lanes": len(lanes), "events_expired": services.events_expire(now=now)}

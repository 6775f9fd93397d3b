"""The outbox: batch events written in the transaction of the change they report.

`outbox_record` receives `batches.signals.batch_transitioned`, which `batch_transition` sends
inside its transaction after the history row, so an event exists exactly when its transition
committed; a process killed a moment later loses nothing, since beat's sweep delivers whatever
is due. Transitions that are no event cost nothing; the others one indexed query when nobody
subscribed. A stall is no transition: `outbox_record_stall` receives `batch_stalled`, sent by
the pipeline's sweep in the transaction that records the stall, and writes its event alike.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from batchsite.celery import app as celery_app
from batchsite.publishing import publish
from notifications.models import Delivery, Event, Subscription

TOPIC_BATCHES = "batches"
# Named, not imported: the tasks sit above the services, which sit above the outbox.
WEBHOOK_DELIVER_TASK = "notifications.tasks.webhook_deliver"

# The batch statuses that are events of the `batches` topic, by the status reached.
BATCH_EVENTS = {
    "processing": "batch_processing",
    "completed": "batch_completed",
    "cancelled": "batch_cancelled",
    "hash_mismatch": "batch_hash_mismatch",
    "validation_failed": "batch_validation_failed",
}
STALL_EVENT = "batch_stalled"


def retry_until(now):
    return now + timedelta(seconds=settings.WEBHOOK_RETRY_FOR_SECONDS)


def subscriptions_active(*, account_id, topic: str, now):
    """Confirmed, not unsubscribed, not past validity, with a creator: the ones that get events
    (whether the creator may still read them is asked when each is sent)."""
    return Subscription.objects.filter(
        account_id=account_id,
        topic=topic,
        created_by__isnull=False,
        confirmed_at__isnull=False,
        unsubscribed_at__isnull=True,
        validity_at__gt=now,
    )


def outbox_record(sender, *, batch, source: str, target: str, **kwargs) -> Event | None:
    """The receiver of batch_transitioned (connected in NotificationsConfig.ready()): runs inside
    the transition's transaction, with `batch` as it is after the move."""
    name = BATCH_EVENTS.get(target)
    if name is None:
        return None
    return event_record(batch=batch, name=name)


def outbox_record_stall(sender, *, batch, **kwargs) -> Event | None:
    """The receiver of batch_stalled (connected in NotificationsConfig.ready()): runs inside the
    sweep's transaction that records the stall, so the stall and its event commit together."""
    return event_record(batch=batch, name=STALL_EVENT)


def event_record(*, batch, name: str) -> Event | None:
    """The batch's event `name`, with a delivery for each subscription active now; nothing (one
    indexed query) when nobody subscribed."""
    now = timezone.now()
    subscription_ids = list(
        subscriptions_active(account_id=batch.account_id, topic=TOPIC_BATCHES, now=now).values_list(
            "pk", flat=True
        )
    )
    if not subscription_ids:
        return None
    # Imported here: the batch serializer imports the batch services, which import states.
    from batches.serializers import BatchSerializer

    event = Event(account_id=batch.account_id, topic=TOPIC_BATCHES, name=name, batch_id=batch.pk)
    event.body = {
        "type": "event",
        "event": name,
        "event_id": str(event.event_id),
        "topic": TOPIC_BATCHES,
        "account": str(batch.account_id),
        "ts": round(now.timestamp(), 3),
        "batch": BatchSerializer(batch).data,
    }
    event.save()
    Delivery.objects.bulk_create(
        Delivery(
            event=event,
            subscription_id=pk,
            batch_id=batch.pk,
            next_attempt_at=now,
            retry_until=retry_until(now),
        )
        for pk in subscription_ids
    )
    deliver_after_commit(subscription_ids=subscription_ids, batch_id=batch.pk)
    return event


def deliver_after_commit(*, subscription_ids, batch_id) -> None:
    """Queues each lane's delivery once the transaction commits, as a batch's steps are
    queued: a broker that is down or silent costs the committing request at most
    BROKER_PUBLISH_TIMEOUT_SECONDS, once, and the webhook sweep sends what was not queued."""
    lane_batch = str(batch_id) if batch_id else None
    task = celery_app.signature(WEBHOOK_DELIVER_TASK)

    def enqueue():
        for pk in subscription_ids:
            if not publish(task, str(pk), lane_batch):
                return

    transaction.on_commit(enqueue, robust=True)

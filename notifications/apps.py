from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications (webhooks)"

    def ready(self):
        from batches.page_sections import batch_page_section_register
        from batches.signals import batch_stalled, batch_transitioned
        from notifications.outbox import outbox_record, outbox_record_stall
        from notifications.selectors import deliveries_of_batch

        batch_transitioned.connect(outbox_record, dispatch_uid="notifications.outbox_record")
        batch_stalled.connect(outbox_record_stall, dispatch_uid="notifications.outbox_record_stall")
        batch_page_section_register(
            name="deliveries", section=lambda batch: deliveries_of_batch(batch_id=batch.pk)
        )

from django.apps import AppConfig


class OperatingConfig(AppConfig):
    name = "operating"
    verbose_name = "Operating"

    def ready(self):
        from batchsite import logs
        from batchsite.health import register_health_report
        from operating import receivers, selectors

        logs.connect_task_context()
        receivers.connect()
        register_health_report(
            "pipeline",
            selectors.pipeline_health,
            fields=("workers_alive", "sweep_age_seconds", "stalled_batches"),
        )

from django.apps import AppConfig


class OperatingConfig(AppConfig):
    name = "operating"
    verbose_name = "Operating"

    def ready(self):
        from operating import logs, receivers

        logs.connect_task_context()
        receivers.connect()

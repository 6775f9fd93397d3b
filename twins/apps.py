from django.apps import AppConfig


class TwinsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "twins"

    def ready(self):
        # Declaring the operations fills the registry that the views and batches read.
        from twins import operations  # noqa: F401

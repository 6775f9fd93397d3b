from django.apps import AppConfig


class PermissionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "permissions"

    def ready(self):
        # Registers the secret's OpenAPI description with drf-spectacular.
        from permissions import schema  # noqa: F401

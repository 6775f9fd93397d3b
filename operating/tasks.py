from celery import shared_task

from operating import services


@shared_task(ignore_result=True)
def usage_prune() -> dict:
    """Periodic: drops usage and refusal counts past USAGE_RETENTION_DAYS."""
    return services.usage_prune()

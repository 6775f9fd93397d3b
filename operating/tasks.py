from batchsite.task_decorator import pipeline_task
from operating import services


@pipeline_task()
def usage_prune() -> dict:
    """Periodic: drops usage and refusal counts past USAGE_RETENTION_DAYS, and ended throttle windows."""
    return services.usage_prune()

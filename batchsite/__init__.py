# The Celery app loads with the project, so tasks bind to it in every process (web, worker,
# beat, manage.py) and `celery -A batchsite` finds it.
from batchsite.celery import app as celery_app

__all__ = ("celery_app",)

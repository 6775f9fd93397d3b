"""The Celery app: Django's CELERY_* settings, and the tasks of every installed app, found once
the apps are loaded. Importing it touches nothing else; the process-wide preparation (folders,
the broker's transports) is the settings' last section."""

import os

from celery import Celery

# `celery -A batchsite` starts here, before anything has named the settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "batchsite.settings")

app = Celery("batchsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

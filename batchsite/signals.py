"""Signals of the ground, for apps that must not import each other (notifications and operating
are peers) and for the server processes the ground configures. Receivers are connected in the
listening app's AppConfig.ready()."""

from django.dispatch import Signal

# Sent by notifications after each try of a webhook delivery is recorded, with `outcome`:
# "delivered", "retrying" (it will be tried again) or "failed" (the retry window closed).
delivery_attempted = Signal()

# Sent by gunicorn's worker_exit hook (batchsite/gunicorn_conf.py) in a web worker that stops.
web_worker_exiting = Signal()

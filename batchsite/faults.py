"""Which errors are the infrastructure's: a task retries on them (the whole chunk or step runs
again later) and a process's own loop tries again, where a line's own error fails that line."""

from botocore.exceptions import BotoCoreError, ClientError
from django.db import InterfaceError, OperationalError

# Dropped or terminated connections, statement cancels, serialization failures, deadlocks and
# lock time-outs all reach Django as OperationalError or InterfaceError.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)
STORAGE_ERRORS = (OSError, BotoCoreError, ClientError)
RETRIED_ERRORS = TRANSIENT_DATABASE_ERRORS + STORAGE_ERRORS


class RetriedFault(Exception):
    """An app's own error that is an infrastructure fault (e.g. a file in storage read short):
    retried like the errors above."""

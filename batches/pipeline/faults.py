"""Which errors are the infrastructure's (retried: the whole chunk or step runs again later)
and which are a line's own (that line fails, the batch goes on)."""

from botocore.exceptions import BotoCoreError, ClientError
from django.db import InterfaceError, OperationalError

# Dropped or terminated connections, statement cancels, serialization failures, deadlocks and
# lock time-outs all reach Django as OperationalError or InterfaceError.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)
STORAGE_ERRORS = (OSError, BotoCoreError, ClientError)
RETRIED_ERRORS = TRANSIENT_DATABASE_ERRORS + STORAGE_ERRORS


class ChunkIncomplete(Exception):
    """A chunk read fewer lines than it owns: the prepared file is not what validation wrote.
    The chunk is not committed."""


class StorageReadError(Exception):
    """Reading the batch's own file from storage failed (not the file's content): retried."""

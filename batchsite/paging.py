"""Keyset paging of listings ordered newest first by (created_at, uuid): the cursor is the
URL-safe base64 of the last row's position, and the next page is the rows after it. One codec
for every listing (the API's batches, webhook subscriptions)."""

import base64
import binascii
import json
import uuid
from datetime import datetime

from django.db.models import Q

from batchsite.errors import ApplicationError


def cursor_encode(row) -> str:
    """The cursor after `row`, which has `created_at` and `uuid`."""
    position = [row.created_at.isoformat(), row.uuid.hex]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def rows_after(cursor: str) -> Q:
    """The keyset condition for the rows after the cursor's row; 400 invalid_cursor for any text
    this service did not issue."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(position, list) or [type(part) for part in position] != [str, str]:
            raise ValueError("not a cursor")
        created_at = datetime.fromisoformat(position[0])
        if created_at.tzinfo is None:
            raise ValueError("not a cursor")
        row_id = uuid.UUID(hex=position[1])
    except (binascii.Error, ValueError, TypeError, UnicodeError, RecursionError):
        raise ApplicationError(
            "The cursor is not one this service issued.", subcode="invalid_cursor"
        ) from None
    return Q(created_at__lt=created_at) | Q(created_at=created_at, uuid__lt=row_id)

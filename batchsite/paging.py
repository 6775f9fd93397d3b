"""Keyset paging of listings ordered newest first by (created_at, uuid): the cursor is the
last row's position, signed and URL-safe base64, and the next page is the rows after it. One
codec for every listing (the API's and the pages' batches, webhook subscriptions). The signature
makes a cursor tamper-proof: one this service did not issue is refused, never read as a
position."""

import base64
import binascii
import json
import uuid
from datetime import datetime

from django.core import signing
from django.db.models import Q

from batchsite.errors import ApplicationError

CURSOR_SALT = "batchsite.paging.cursor"


class InvalidCursor(ApplicationError):
    def __init__(self):
        super().__init__("The cursor is not one this service issued.", subcode="invalid_cursor")


def cursor_encode(row) -> str:
    """The cursor after `row`, which has `created_at` and `uuid`."""
    position = json.dumps([row.created_at.isoformat(), row.uuid.hex])
    signed = signing.Signer(salt=CURSOR_SALT).sign(position)
    return base64.urlsafe_b64encode(signed.encode()).decode()


def rows_after(cursor: str) -> Q:
    """The keyset condition for the rows after the cursor's row; InvalidCursor (400
    invalid_cursor) for any text this service did not issue."""
    try:
        signed = base64.urlsafe_b64decode(cursor.encode()).decode()
        created_iso, row_hex = json.loads(signing.Signer(salt=CURSOR_SALT).unsign(signed))
        created_at = datetime.fromisoformat(created_iso)
        row_id = uuid.UUID(hex=row_hex)
    except (signing.BadSignature, binascii.Error, ValueError, TypeError, UnicodeError):
        raise InvalidCursor from None
    # The bound on created_at alone is what an index scan can start at; the OR is no index
    # condition, and without the bound a page read every row newer than the cursor's.
    after = Q(created_at__lt=created_at) | Q(created_at=created_at, uuid__lt=row_id)
    return Q(created_at__lte=created_at) & after

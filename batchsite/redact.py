"""Credentials out of the logs: whoever reads a log line must not get a working URL or PIN.

CREDENTIAL_PATHS is the one list of the paths that carry a credential, each shape written up
to the credential segment that follows it. The gunicorn access log (batchsite.serving), the
app's logging (the console handler's filter) and deploy/nginx.conf's `map` redact that segment,
and every signed value in a query (the webhook token, S3's signatures).
tests/security/test_log_redaction.py holds the URL patterns and nginx's map to this list: a
route with a credential segment that no shape covers fails it."""

import logging
import re

REDACTED = "[redacted]"
CREDENTIAL_PATHS = (
    "/uploads/",  # a signed upload URL's token
    "/downloads/partial/",  # a signed partial-download token (before /downloads/: it is longer)
    "/downloads/",  # a signed download token
    "/secrets/[^/?]+/",  # a PIN, after the account it belongs to
)
# The prefixes as one regex: nginx's map repeats this text verbatim.
CREDENTIAL_PREFIX = "(?:" + "|".join(CREDENTIAL_PATHS) + ")"
CREDENTIAL_PATH = re.compile(f"({CREDENTIAL_PREFIX})[^/?#\\s]+")
CREDENTIAL_QUERY = re.compile(
    r"((?:^|[?&;])(?:token|signature|X-Amz-Signature|X-Amz-Credential)=)[^&#\s]*", re.I
)


def redact(text: str) -> str:
    if not isinstance(text, str) or ("/" not in text and "=" not in text):
        return text
    return CREDENTIAL_QUERY.sub(r"\1" + REDACTED, CREDENTIAL_PATH.sub(r"\1" + REDACTED, text))


class TokenRedactingFilter(logging.Filter):
    """Redacts the formatted message of every record (Django logs paths, e.g. "Not Found:
    /downloads/<token>")."""

    def filter(self, record):
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

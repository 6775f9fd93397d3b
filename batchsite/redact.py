"""Signed upload and download tokens out of the logs: whoever reads a log line must not get a
working URL. Used by the gunicorn access log (batchsite.serving) and Django's logging."""

import logging
import re

REDACTED = "[redacted]"
TOKEN_PATH = re.compile(r"(/(?:uploads|downloads)/)[^/?#\s\"']+")
TOKEN_QUERY = re.compile(
    r"((?:^|[?&;])(?:token|signature|X-Amz-Signature|X-Amz-Credential)=)[^&#\s\"']*", re.I
)


def redact(text: str) -> str:
    if not isinstance(text, str) or ("/" not in text and "=" not in text):
        return text
    return TOKEN_QUERY.sub(r"\1" + REDACTED, TOKEN_PATH.sub(r"\1" + REDACTED, text))


class TokenRedactingFilter(logging.Filter):
    """Redacts the formatted message of every record (Django logs paths, e.g. "Not Found:
    /downloads/<token>")."""

    def filter(self, record):
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

"""The storage seam: the URLs a client PUTs an upload to and GETs a results file from.

With local storage (the embedded default) both are this server's own endpoints, signed with
`django.core.signing` and carrying their expiry; the signature is the only credential, so a
client needs no secret to use them. An S3 backend will hand out presigned PUT and GET URLs
from the same two methods instead, and the bytes will not pass through this server.
"""

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone

from batchsite.errors import ApplicationError

UPLOAD_SALT = "batches.upload-url"
DOWNLOAD_SALT = "batches.download-url"


@dataclass(frozen=True)
class Download:
    """What a signed download URL grants: one file in storage, offered under `filename`."""

    name: str
    filename: str


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: datetime


class SignedLocalUrls:
    """URLs to this server's own upload and download endpoints."""

    def upload_url(self, *, handler: uuid.UUID, expires_at: datetime, base_url: str) -> str:
        token = signing.dumps({"handler": str(handler), "exp": expires_at.timestamp()}, salt=UPLOAD_SALT)
        return base_url.rstrip("/") + reverse("upload_file", kwargs={"token": token})

    def download_url(self, *, name: str, filename: str, base_url: str) -> SignedUrl:
        expires_at = timezone.now() + timedelta(seconds=settings.DOWNLOAD_URL_VALIDITY_SECONDS)
        token = signing.dumps(
            {"name": name, "filename": filename, "exp": expires_at.timestamp()}, salt=DOWNLOAD_SALT
        )
        url = base_url.rstrip("/") + reverse("download_file", kwargs={"token": token})
        return SignedUrl(url=url, expires_at=expires_at)


def file_urls() -> SignedLocalUrls:
    return SignedLocalUrls()


def _unsigned(token: str, *, salt: str, what: str) -> dict:
    try:
        payload = signing.loads(token, salt=salt)
    except signing.BadSignature:
        raise ApplicationError(
            f"This {what} URL is not valid.", subcode=f"{what}_url_invalid", status_code=403
        ) from None
    if payload["exp"] <= time.time():
        raise ApplicationError(
            f"This {what} URL has expired.", subcode=f"{what}_url_expired", status_code=403
        )
    return payload


def upload_url_handler(token: str) -> uuid.UUID:
    """The handler a signed upload URL was issued for; refuses a forged or expired URL."""
    return uuid.UUID(_unsigned(token, salt=UPLOAD_SALT, what="upload")["handler"])


def download_url_file(token: str) -> Download:
    """The file a signed download URL grants; refuses a forged or expired URL."""
    payload = _unsigned(token, salt=DOWNLOAD_SALT, what="download")
    return Download(name=payload["name"], filename=payload["filename"])

"""Every URL this service hands out for a file: where to PUT an upload, and where to GET a
batch's input, results or errors file or, while it runs, the lines run so far. The API, the
pages and the admin all ask here, so the file a part names, the choice between the final file
and the lines so far, and the expiry cannot drift apart between them; the storage backend only
signs (batches.storage).

`base_url` is where this server's own endpoints are reached: `batchsite.clients.public_base_url`
for what a client is given, "/" for a relative link on one of this server's pages.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from batches.models import Batch, Upload
from batches.partial import PARTIAL_SALT, PARTIAL_STATUSES, PARTS
from batches.storage import SignedLocalUrls, batch_download, file_urls, sign_local


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: datetime
    # The lines run so far of a running batch, not its final file (docs/contract.md, section 11).
    partial: bool = False


def upload_url(*, upload: Upload, base_url: str) -> str:
    """Where the client PUTs the upload's file, valid as long as the upload."""
    return file_urls().upload_url(handler=upload.handler, expires_at=upload.expires_at, base_url=base_url)


def _download_expires_at() -> datetime:
    return timezone.now() + timedelta(seconds=settings.DOWNLOAD_URL_VALIDITY_SECONDS)


def final_download_url(*, batch: Batch, part: str, base_url: str, format: str = "json") -> SignedUrl | None:
    """The URL of the batch's `part` file (`input`, `results` or `errors`), for `results` and
    `errors` in `format` (`json` or `csv`); None while it has none.

    CSV is always this server's own endpoint, even on S3: the stored object is JSON Lines, and
    the endpoint converts it as it streams (docs/decisions.md)."""
    download = batch_download(batch, part, format)
    if download is None:
        return None
    expires_at = _download_expires_at()
    urls = SignedLocalUrls() if download.format == "csv" else file_urls()
    url = urls.download_url(download=download, expires_at=expires_at, base_url=base_url)
    return SignedUrl(url=url, expires_at=expires_at)


def batch_download_url(*, batch: Batch, part: str, base_url: str, format: str = "json") -> SignedUrl | None:
    """The final file's URL once it is written; until then, while the batch runs, the URL of the
    `results` or `errors` lines run so far (`partial`), always this server's own endpoint
    (batches.partial streams it); None otherwise."""
    final = final_download_url(batch=batch, part=part, base_url=base_url, format=format)
    if final is not None or part not in PARTS or batch.status not in PARTIAL_STATUSES:
        return final
    expires_at = _download_expires_at()
    grant = {"batch": str(batch.pk), "part": part}
    if format != "json":
        grant["format"] = format
    url = sign_local("download_partial", grant, salt=PARTIAL_SALT, expires_at=expires_at, base_url=base_url)
    return SignedUrl(url=url, expires_at=expires_at, partial=True)

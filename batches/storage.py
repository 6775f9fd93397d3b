"""The storage seam: signing the URLs a client PUTs an upload to and GETs a file from (which
URL, for which file, until when, is batches.links's to decide), and the few storage reads the
pipeline needs beyond Django's Storage API.

With local storage (the embedded default) both URLs are this server's own endpoints, signed
with `django.core.signing` and carrying their expiry; the signature is the only credential, so
a client needs no secret to use them. With S3 (django-storages) they are presigned S3 URLs:
the bytes go between the client and the bucket and never through this server, so the service
learns of an upload only by looking at the bucket (`bucket_object`).
"""

import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError
from django.core import signing
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from batches.csv_results import CSV_CONTENT_TYPE
from batches.fileformat import CSV_CONTENT_TYPES, GZIP_MAGIC
from batches.models import Upload
from batchsite.errors import ApplicationError

UPLOAD_SALT = "batches.upload-url"
DOWNLOAD_SALT = "batches.download-url"


RESULTS_CONTENT_TYPE = "application/x-ndjson"
STREAM_BLOCK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Download:
    """What a signed download URL grants: one file in storage, offered under `filename` as
    `content_type`; with `format` "csv", the JSON Lines results file converted to CSV with one
    column per echoed field (batches.csv_results)."""

    name: str
    filename: str
    content_type: str = RESULTS_CONTENT_TYPE
    format: str = "json"
    echo_fields: tuple[str, ...] = ()


def batch_download(batch, part: str, format: str = "json") -> Download | None:
    """The one place that names a batch's file for a client: `part` is `results` or `errors`
    (JSON Lines, `<batch>-results.jsonl`, or with `format` "csv" the same file as CSV,
    `<batch>-results.csv`) or `input` (the file as uploaded, with its own type: `.jsonl`,
    `.csv`, or either `.gz`). None while the batch has no such file."""
    if part != "input":
        name = batch.errors_file if part == "errors" else batch.results_file
        if not name:
            return None
        if format == "csv":
            return Download(
                name=name,
                filename=f"{batch.uuid}-{part}.csv",
                content_type=CSV_CONTENT_TYPE,
                format="csv",
                echo_fields=tuple(batch.echo_fields),
            )
        return Download(name=name, filename=f"{batch.uuid}-{part}.jsonl")
    upload = batch.upload if batch.upload_id else None
    name = batch.input_file or (upload.file_name if upload else "")
    if not name:
        return None
    try:
        head = read_range(name, 0, 64)
    except (OSError, ClientError):
        head = b""  # gone (the upload after its copy, a deleted batch): the link will say so
    suffix, content_type = input_format(head, upload.content_type if upload else "")
    return Download(name=name, filename=f"{batch.uuid}-input{suffix}", content_type=content_type)


def input_format(head: bytes, declared_type: str) -> tuple[str, str]:
    """The file suffix and content type of an input file from its first bytes, as the pipeline
    reads it (batches.fileformat): gzip by its magic bytes; CSV by the type it was uploaded
    with, or a first character other than `{`."""
    gzipped = head.startswith(GZIP_MAGIC)
    if gzipped:
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head)
        except zlib.error:
            head = b""
    is_csv = declared_type.split(";")[0].strip().lower() in CSV_CONTENT_TYPES
    first = head.lstrip()[:1]
    if not is_csv and first:
        is_csv = first != b"{"
    suffix, content_type = (".csv", "text/csv") if is_csv else (".jsonl", RESULTS_CONTENT_TYPE)
    return (suffix + ".gz", "application/gzip") if gzipped else (suffix, content_type)


def sign_local(route: str, payload: dict, *, salt: str, expires_at: datetime, base_url: str) -> str:
    """A URL of this server's endpoint `route` whose token carries `payload` and its expiry,
    signed with `salt`: the signature is the only credential (`unsign_local` checks it)."""
    token = signing.dumps({**payload, "exp": expires_at.timestamp()}, salt=salt)
    return base_url.rstrip("/") + reverse(route, kwargs={"token": token})


def unsign_local(token: str, *, salt: str, what: str) -> dict:
    """The payload of a token `sign_local` signed with `salt`; refuses a forged or expired one
    (`{what}_url_invalid`, `{what}_url_expired`)."""
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


class SignedLocalUrls:
    """URLs to this server's own upload and download endpoints."""

    def upload_url(self, *, handler: uuid.UUID, expires_at: datetime, base_url: str) -> str:
        return sign_local(
            "upload_file",
            {"handler": str(handler)},
            salt=UPLOAD_SALT,
            expires_at=expires_at,
            base_url=base_url,
        )

    def download_url(self, *, download: Download, expires_at: datetime, base_url: str) -> str:
        payload = {"name": download.name, "filename": download.filename, "type": download.content_type}
        if download.format != "json":
            payload |= {"format": download.format, "echo": list(download.echo_fields)}
        return sign_local(
            "download_file", payload, salt=DOWNLOAD_SALT, expires_at=expires_at, base_url=base_url
        )


class PresignedS3Urls:
    """Presigned URLs straight to the bucket. An upload's object is named when the upload is
    created (`Upload.file_name`), so its URL is signed for exactly that key."""

    def __init__(self, storage: S3Storage):
        self.storage = storage

    def upload_url(self, *, handler: uuid.UUID, expires_at: datetime, base_url: str) -> str:
        name = Upload.objects.values_list("file_name", flat=True).get(handler=handler)
        seconds = max(1, int((expires_at - timezone.now()).total_seconds()))
        return self.storage.connection.meta.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.storage.bucket_name, "Key": s3_key(self.storage, name)},
            ExpiresIn=seconds,
            HttpMethod="PUT",
        )

    def download_url(self, *, download: Download, expires_at: datetime, base_url: str) -> str:
        # `expires_at` was set a moment ago to a whole number of seconds ahead.
        seconds = max(1, round((expires_at - timezone.now()).total_seconds()))
        return self.storage.url(
            download.name,
            parameters={
                "ResponseContentDisposition": f'attachment; filename="{download.filename}"',
                "ResponseContentType": download.content_type,
            },
            expire=seconds,
        )


def uploads_go_direct() -> bool:
    """True when clients PUT uploads straight into storage rather than through this server."""
    return isinstance(default_storage, S3Storage)


def file_urls() -> SignedLocalUrls | PresignedS3Urls:
    if uploads_go_direct():
        return PresignedS3Urls(default_storage)
    return SignedLocalUrls()


def s3_key(storage: S3Storage, name: str) -> str:
    return storage._normalize_name(clean_name(name))


@dataclass(frozen=True)
class StoredObject:
    size: int
    content_type: str
    modified_at: datetime


def bucket_object(name: str) -> StoredObject | None:
    """What the bucket holds under `name` (one HEAD request), or None. S3 storage only."""
    try:
        head = default_storage.connection.meta.client.head_object(
            Bucket=default_storage.bucket_name, Key=s3_key(default_storage, name)
        )
    except ClientError as error:
        if error.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return None
        raise
    return StoredObject(
        size=head["ContentLength"], content_type=head.get("ContentType", ""), modified_at=head["LastModified"]
    )


def read_range(name: str, start: int, end: int) -> bytes:
    """Bytes `start` to `end` (exclusive) of a stored file. On S3 a ranged GET: opening an S3
    file downloads all of it first, which for one chunk of a large file is far too much."""
    if end <= start:
        return b""
    if isinstance(default_storage, S3Storage):
        response = default_storage.connection.meta.client.get_object(
            Bucket=default_storage.bucket_name,
            Key=s3_key(default_storage, name),
            Range=f"bytes={start}-{end - 1}",
        )
        return response["Body"].read()
    with default_storage.open(name, "rb") as stored:
        stored.seek(start)
        return stored.read(end - start)


def upload_url_handler(token: str) -> uuid.UUID:
    """The handler a signed upload URL was issued for; refuses a forged or expired URL."""
    return uuid.UUID(unsign_local(token, salt=UPLOAD_SALT, what="upload")["handler"])


def download_url_file(token: str) -> Download:
    """The file a signed download URL grants; refuses a forged or expired URL."""
    payload = unsign_local(token, salt=DOWNLOAD_SALT, what="download")
    # URLs signed before the type was part of the token were all for JSON Lines files.
    return Download(
        name=payload["name"],
        filename=payload["filename"],
        content_type=payload.get("type", RESULTS_CONTENT_TYPE),
        format=payload.get("format", "json"),
        echo_fields=tuple(payload.get("echo", ())),
    )


def stored_blocks(name: str) -> Iterator[bytes]:
    """A stored file's bytes, a block at a time, without holding it whole: on S3 the object's
    body as it arrives (opening an S3 file downloads all of it first)."""
    if isinstance(default_storage, S3Storage):
        response = default_storage.connection.meta.client.get_object(
            Bucket=default_storage.bucket_name, Key=s3_key(default_storage, name)
        )
        yield from response["Body"].iter_chunks(STREAM_BLOCK_BYTES)
        return
    with default_storage.open(name, "rb") as stored:
        while block := stored.read(STREAM_BLOCK_BYTES):
            yield block

"""The cache (upload URL) and batch endpoints, with Trusted Twin's routes, shapes and codes.

Creates answer 201, every other call 200, as the examples of Trusted Twin's client show.
"""

from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions as drf_permissions
from rest_framework import status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from batches import selectors, services
from batches.csv_results import CSV_CONTENT_TYPE, results_csv
from batches.links import batch_download_url, upload_url
from batches.partial import partial_grant, partial_lines, partial_source
from batches.retry import batch_retry
from batches.serializers import (
    BatchCreateSerializer,
    BatchDetailQuerySerializer,
    BatchDownloadSerializer,
    BatchListQuerySerializer,
    BatchPageSerializer,
    BatchRetrySerializer,
    BatchSerializer,
    BatchUpdateSerializer,
    DownloadSerializer,
    HandlerSerializer,
    UploadStoredSerializer,
    UploadUrlSerializer,
)
from batches.storage import download_url_file, stored_blocks, upload_url_handler
from batchsite.clients import public_base_url
from batchsite.errors import Conflict
from batchsite.inputs import validated
from batchsite.schema import error_responses
from batchsite.timestamps import from_ts
from permissions.access import Public


class UploadUrlsApi(APIView):
    required_actions = {"POST": "create_upload_url"}

    @extend_schema(
        operation_id="create_upload_url",
        request=None,
        responses={201: UploadUrlSerializer, **error_responses(401, 403)},
        description="A URL to PUT a batch file to, valid for 60 minutes.",
    )
    def post(self, request):
        upload = services.upload_create(account=request.account, created_by=request.user.account_user)
        url = upload_url(upload=upload, base_url=public_base_url(request))
        return Response(
            UploadUrlSerializer({"url": url, "upload": upload}).data, status=status.HTTP_201_CREATED
        )


class UploadUrlApi(APIView):
    required_actions = {"DELETE": "invalidate_upload_url"}

    @extend_schema(
        operation_id="invalidate_upload_url",
        responses={200: HandlerSerializer, **error_responses(401, 403, 404)},
        description="The URL stops working; a file PUT to it is deleted unless a batch holds it.",
    )
    def delete(self, request, handler):
        upload = selectors.upload_get(account=request.account, handler=handler)
        services.upload_invalidate(upload=upload)
        return Response(HandlerSerializer(upload).data)


class UploadFileApi(APIView):
    """The signed URL is the credential: no secret is read here, and no CSRF token is asked."""

    authentication_classes = []
    permission_classes = [Public]

    @extend_schema(
        operation_id="upload_file",
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: UploadStoredSerializer, **error_responses(400, 403, 404, 409, 411, 413, 507)},
        description="Stores the body as the upload's file; a second PUT replaces it until a batch takes "
        "the handler. Needs a Content-Length header.",
    )
    def put(self, request, token):
        content_length = request.META.get("CONTENT_LENGTH")
        upload = services.upload_store(
            handler=upload_url_handler(token),
            stream=request.stream,
            content_length=int(content_length) if content_length and content_length.isdigit() else None,
            content_type=request.content_type or "",
        )
        return Response(UploadStoredSerializer(upload).data)


class BatchesApi(APIView):
    required_actions = {"POST": "create_batch", "GET": "get_batches"}

    @extend_schema(
        operation_id="create_batch",
        request=BatchCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                location=OpenApiParameter.HEADER,
                required=False,
                description="The same key and body within 24 hours returns the same batch (201, with "
                "Idempotent-Replayed: true) instead of creating another; a different body is 409.",
            )
        ],
        responses={201: BatchSerializer, **error_responses(400, 401, 403, 409)},
    )
    def post(self, request):
        data = validated(BatchCreateSerializer, request.data)
        batch, created = services.batch_create(
            account=request.account,
            user=request.user,
            idempotency_key=request.headers.get("Idempotency-Key", "").strip(),
            **data,
        )
        response = Response(BatchSerializer(batch).data, status=status.HTTP_201_CREATED)
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(
        operation_id="get_batches",
        parameters=[BatchListQuerySerializer],
        responses={200: BatchPageSerializer, **error_responses(400, 401, 403)},
        description="The account's batches, newest first. Pass the returned cursor (with the same "
        "filters) for the next page; it is null on the last one.",
    )
    def get(self, request):
        query = validated(BatchListQuerySerializer, request.query_params)
        page = selectors.batch_list(
            account=request.account,
            status=query.get("status"),
            operation=query.get("operation"),
            created_from=from_ts(query.get("ge")),
            created_to=from_ts(query.get("le")),
            cursor=query.get("cursor"),
            limit=query["limit"],
        )
        body = {"batches": {str(batch.uuid): batch.status for batch in page.batches}, "cursor": page.cursor}
        return Response(BatchPageSerializer(body).data)


class DownloadFormatNegotiation(DefaultContentNegotiation):
    """On GET /batches/{batch}, `format` names the download's format (json or csv), not the
    renderer of the answer, which stays JSON."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


class BatchApi(APIView):
    required_actions = {"GET": "get_batch", "PATCH": "update_batch", "DELETE": "delete_batch"}
    content_negotiation_class = DownloadFormatNegotiation

    @extend_schema(
        operation_id="get_batch",
        parameters=[BatchDetailQuerySerializer],
        responses={200: BatchDownloadSerializer, **error_responses(400, 401, 403, 404, 409)},
        description="With download=true, adds a temporary URL of the results file (part=errors: only "
        "the failed lines; format=csv: as CSV, always served by this server). While the batch runs "
        "(processing, cancel, cancelling, and until its final file is written) the URL gives the "
        "lines run so far, in line order, and download.partial is true; 409 before any line can run.",
    )
    def get(self, request, batch):
        found = selectors.batch_get(account=request.account, batch_id=batch)
        query = validated(BatchDetailQuerySerializer, request.query_params)
        body = BatchSerializer(found).data
        if query["download"]:
            signed = batch_download_url(
                batch=found, part=query["part"], base_url=public_base_url(request), format=query["format"]
            )
            if signed is None:
                raise Conflict(
                    f"The batch has no {query['part']} file yet ({found.status}).",
                    subcode=f"{query['part']}_not_ready",
                )
            body["download"] = DownloadSerializer(signed).data
        return Response(body)

    @extend_schema(
        operation_id="update_batch",
        request=BatchUpdateSerializer,
        responses={200: BatchSerializer, **error_responses(400, 401, 403, 404, 409, 503)},
        description='{"status": "cancel"} (alone) cancels the batch: asking again while it stops changes '
        'nothing; a finished batch is 409. {"status": "paused"} pauses a processing batch and '
        '{"status": "processing"} resumes a paused one (another status: 409). not_before, deadline_ts '
        "(or complete_within, from now) and priority change while the batch has not ended (409 "
        "batch_ended otherwise); the schedule changes first, then the status.",
    )
    def patch(self, request, batch):
        found = selectors.batch_get(account=request.account, batch_id=batch)
        changes = validated(BatchUpdateSerializer, request.data)
        status_to = changes.pop("status", None)
        if status_to == "cancel":
            return Response(BatchSerializer(services.batch_cancel(batch=found)).data)
        complete_within = changes.pop("complete_within", None)
        if complete_within is not None or changes.get("deadline_at") is not None:
            now = services.database_now(account_id=found.account_id)
            if complete_within is not None:
                changes["deadline_at"] = now + timedelta(seconds=complete_within)
            if changes["deadline_at"] <= now:
                raise ValidationError("deadline_ts has already passed.", code="invalid_deadline")
        if changes:
            found = services.batch_reschedule(batch=found, **changes)
        if status_to == "paused":
            found = services.batch_pause(batch=found)
        elif status_to == "processing":
            found = services.batch_resume(batch=found)
        return Response(BatchSerializer(found).data)

    @extend_schema(
        operation_id="delete_batch",
        responses={200: BatchSerializer, **error_responses(401, 403, 404, 503)},
        description="Starts deletion: a running batch is cancelled first; afterwards the batch, its "
        "files and results are gone and GET answers 404.",
    )
    def delete(self, request, batch):
        found = selectors.batch_get(account=request.account, batch_id=batch)
        return Response(BatchSerializer(services.batch_delete(batch=found)).data)


class BatchRetryApi(APIView):
    required_actions = {"POST": "create_batch"}

    @extend_schema(
        operation_id="retry_batch",
        request=BatchRetrySerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                location=OpenApiParameter.HEADER,
                required=False,
                description="The same key within 24 hours returns the same retry (201, with "
                "Idempotent-Replayed: true); a key used for another request is 409.",
            )
        ],
        responses={201: BatchSerializer, **error_responses(400, 401, 403, 404, 409)},
        description="A new batch, linked by retry_of, of only the lines that failed or never ran, in "
        "their order; 409 when the batch is not completed or cancelled, every line succeeded, or it "
        "was already retried (batch_already_retried, naming the retry: retry that one instead). The "
        "body is optional: the retry's own not_before, deadline_ts or complete_within, and priority "
        "(else the batch's); none of the batch's start time or deadline is carried over.",
    )
    def post(self, request, batch):
        found = selectors.batch_get(account=request.account, batch_id=batch)
        schedule = validated(BatchRetrySerializer, request.data)
        retry, created = batch_retry(
            batch=found,
            user=request.user,
            idempotency_key=request.headers.get("Idempotency-Key", "").strip(),
            schedule=schedule,
        )
        response = Response(BatchSerializer(retry).data, status=status.HTTP_201_CREATED)
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class DownloadFileApi(APIView):
    """The signed URL is the credential: no secret is read here."""

    authentication_classes = []
    permission_classes = [Public]

    @extend_schema(
        operation_id="download_file",
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
            **error_responses(403, 404),
        },
        description="Streams a results file, as stored or as CSV; the URL comes from "
        "GET /batches/{batch}?download=true.",
    )
    def get(self, request, token):
        granted = download_url_file(token)
        if not default_storage.exists(granted.name):
            raise Http404("The file is gone.")
        if granted.format == "csv":
            rows = results_csv(stored_blocks(granted.name), granted.echo_fields)
            return csv_response(rows, granted.filename)
        return FileResponse(
            default_storage.open(granted.name, "rb"),
            as_attachment=True,
            filename=granted.filename,
            content_type=granted.content_type,
        )


class PartialDownloadApi(APIView):
    """The signed URL is the credential: no secret is read here."""

    authentication_classes = []
    permission_classes = [drf_permissions.AllowAny]

    @extend_schema(
        operation_id="download_partial",
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
            **error_responses(403, 404, 410),
        },
        description="Streams the lines a running batch has run so far, in line order, in the results "
        "file's format or as CSV; the URL comes from GET /batches/{batch}?download=true while the batch "
        "runs. Once the batch has ended the URL answers 410 download_url_ended: the final file needs a "
        "fresh URL from GET /batches/{batch}?download=true.",
    )
    def get(self, request, token):
        grant = partial_grant(token)
        batch = partial_source(grant.batch)
        lines = partial_lines(batch.pk, grant.part)
        if grant.format == "csv":
            rows = results_csv(lines, batch.echo_fields)
            return csv_response(rows, f"{batch.uuid}-{grant.part}.partial.csv")
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="{batch.uuid}-{grant.part}.partial.jsonl"'
        return response


def csv_response(rows: Iterator[bytes], filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(rows, content_type=CSV_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response

"""The one error contract: every error answer is {"subcode", "description", "trace"}.

Services raise `ApplicationError`, Django's `ValidationError`, `PermissionDenied` or `Http404`
and never import DRF; the handler below turns each of them, and DRF's own exceptions, into
the error body. The trace id is written to the log with the error, so an operator can find
the line a client quotes.
"""

import logging
import math
import uuid
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse, UnreadablePostError
from rest_framework import exceptions, status
from rest_framework.response import Response

from batchsite.logs import current_trace

logger = logging.getLogger("batchsite.errors")


class ApplicationError(Exception):
    """A refusal a client can act on: an HTTP status, a stable subcode and a sentence."""

    def __init__(self, description: str, *, subcode: str, status_code: int = 400):
        super().__init__(description)
        self.description = description
        self.subcode = subcode
        self.status_code = status_code


class Conflict(ApplicationError):
    def __init__(self, description: str, *, subcode: str = "conflict"):
        super().__init__(description, subcode=subcode, status_code=409)


# What an input check raises when it refuses the input: Django's ValidationError, or DRF's from
# an operation's serializer. For code that checks input without importing DRF (the pipeline);
# describe_exception answers both.
VALIDATION_ERRORS = (DjangoValidationError, exceptions.ValidationError)


class ServerErrorsOnly(logging.Filter):
    """For Django's `django.request` logger: a refused request (4xx) already has its one line
    from `error_body`, with the trace the client got; only server errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", 500) >= 500


def error_body(*, status_code: int, subcode: str, description: str) -> dict:
    # The request's own trace, so the body, this log line and the request's others agree.
    trace = current_trace() or uuid.uuid4().hex
    logger.log(
        logging.ERROR if status_code >= 500 else logging.INFO,
        "trace=%s status=%s subcode=%s %s",
        trace,
        status_code,
        subcode,
        description,
    )
    return {"subcode": subcode, "description": description, "trace": trace}


def flatten_detail(detail, prefix: str = "") -> list[str]:
    """DRF's nested error detail as `field: message` sentences."""
    if isinstance(detail, dict):
        sentences = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            sentences += flatten_detail(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return sentences
    if isinstance(detail, list):
        sentences = []
        for item in detail:
            sentences += flatten_detail(item, prefix)
        return sentences
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def first_code(detail) -> str | None:
    if isinstance(detail, dict):
        for value in detail.values():
            code = first_code(value)
            if code:
                return code
        return None
    if isinstance(detail, list):
        return first_code(detail[0]) if detail else None
    return getattr(detail, "code", None)


DRF_SUBCODES = {
    exceptions.NotAuthenticated: "no_secret",
    exceptions.AuthenticationFailed: "invalid_secret",
    exceptions.PermissionDenied: "action_not_allowed",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.ParseError: "malformed_body",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.NotAcceptable: "not_acceptable",
}


@dataclass(frozen=True)
class ErrorInfo:
    status_code: int
    subcode: str
    description: str


def describe_exception(exc) -> ErrorInfo | None:
    """The status, subcode and description a client gets for an exception, or None when
    it is not a client's error. The batch executor uses this too, so a line in a results
    file carries exactly what the single call would have answered."""
    if isinstance(exc, ApplicationError):
        return ErrorInfo(exc.status_code, exc.subcode, exc.description)
    if isinstance(exc, UnreadablePostError):
        # The client stopped sending the body (the server's idle timeout) or went away.
        return ErrorInfo(400, "body_not_received", "The request body stopped arriving before its end.")
    if isinstance(exc, RequestDataTooBig):
        return ErrorInfo(413, "request_too_large", str(exc) or "The request body is too large.")
    if isinstance(exc, SuspiciousOperation):
        # Django's own refusals of a request (too many fields, a bad header, ...).
        return ErrorInfo(400, "malformed_request", str(exc) or "The request is malformed.")
    if isinstance(exc, Http404):
        return ErrorInfo(404, "not_found", str(exc) or "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return ErrorInfo(403, "action_not_allowed", str(exc) or "Action not allowed.")
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        code = getattr(exc, "code", None) or "invalid_input"
        return ErrorInfo(400, code, "; ".join(flatten_detail(detail)))
    if isinstance(exc, exceptions.ValidationError):
        code = first_code(exc.detail)
        generic = code is None or code in ("invalid", "required", "null", "blank")
        return ErrorInfo(400, "invalid_input" if generic else code, "; ".join(flatten_detail(exc.detail)))
    if isinstance(exc, exceptions.APIException):
        subcode = next(
            (code for cls, code in DRF_SUBCODES.items() if isinstance(exc, cls)),
            exc.default_code,
        )
        return ErrorInfo(exc.status_code, subcode, str(exc.detail))
    return None


def exception_handler(exc, context):
    info = describe_exception(exc)
    if info is None:
        logger.exception("unhandled error in %s", context.get("view"))
        return error_response(500, "internal_error", "The server could not complete the request.")
    response = error_response(info.status_code, info.subcode, info.description)
    retry_after = exc.wait if isinstance(exc, exceptions.Throttled) else getattr(exc, "retry_after", None)
    if retry_after:
        response["Retry-After"] = str(math.ceil(retry_after))
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        response["WWW-Authenticate"] = "Bearer"
    return response


def error_response(status_code: int, subcode: str, description: str) -> Response:
    return Response(
        error_body(status_code=status_code, subcode=subcode, description=description),
        status=status_code,
    )


def json_not_found(request, exception=None):
    return JsonResponse(
        error_body(status_code=404, subcode="not_found", description="No such route."),
        status=status.HTTP_404_NOT_FOUND,
    )


def json_server_error(request):
    return JsonResponse(
        error_body(
            status_code=500,
            subcode="internal_error",
            description="The server could not complete the request.",
        ),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )

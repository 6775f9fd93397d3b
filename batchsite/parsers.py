"""The JSON request body parser of every route: DRF's, refusing what `batchsite.jsonsafe`
refuses (too deep, NaN/Infinity, out-of-range numbers, lone surrogates) with 400
`malformed_body`, and a body over `DATA_UPLOAD_MAX_MEMORY_SIZE` with 413, instead of letting
any of them reach a view (or the database) and end as a 500."""

from django.conf import settings
from rest_framework import exceptions, parsers, status

from batchsite import jsonsafe


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def body_limit() -> int | None:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def read_limited(stream) -> bytes:
    """The whole body, refused with 413 as soon as it passes the limit."""
    if stream is None:
        return b""
    limit = body_limit()
    body = stream.read() if limit is None else stream.read(limit + 1)
    if limit is not None and len(body) > limit:
        raise RequestTooLarge(f"The request body is over {limit} bytes.")
    return body


class SafeJSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        body = read_limited(stream)
        encoding = parsers.get_encoding(parser_context or {})
        try:
            if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
                body = body.decode(encoding).encode("utf-8", "surrogatepass")
            return jsonsafe.loads(body)
        except jsonsafe.JsonRefused as error:
            raise exceptions.ParseError(f"JSON parse error - {error.description}") from None
        except (ValueError, LookupError) as error:
            raise exceptions.ParseError(f"JSON parse error - {error}") from None

"""The OpenAPI schema's error answers and links, in one place.

Every operation documents each status it can answer, each with the one error body
(`{"subcode", "description", "trace"}`). `error_responses(409, 413)` gives extend_schema the
codes particular to a view; `complete_operations`, a drf-spectacular postprocessing hook, adds
to every operation the codes that follow from its shape: 401 and 403 where a secret is needed,
404 where the path names an object, 400 where there is input, 415 where there is a body, 429
where a throttle applies. It also adds the OpenAPI links that let a client (and schemathesis's
stateful phase) go from a created object to the operations on it.
"""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    subcode = serializers.CharField(help_text="A stable name of the cause, e.g. handler_expired.")
    description = serializers.CharField(help_text="What went wrong, for a person.")
    trace = serializers.CharField(help_text="An id also written to the server's log.")


ERROR_MEANINGS = {
    400: "Bad input; the subcode names the cause.",
    401: "No secret, or not a valid one.",
    403: "The role does not allow this action.",
    404: "No such object in the caller's account.",
    409: "The object's state does not allow this now.",
    410: "No longer served: the answer says where to ask for a fresh URL.",
    411: "No Content-Length header.",
    413: "Too large: the body, or the file over its size limit.",
    415: "A body that is not JSON (or a form).",
    429: "Too many requests; Retry-After says when to try again.",
    503: "Held up by a server fault (a worker that stopped answering); nothing changed. Try again later.",
    507: "The service's storage is full; nothing was kept. Try again later.",
}
ERROR_COMPONENT = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "subcode": {"type": "string", "description": "A stable name of the cause, e.g. handler_expired."},
        "description": {"type": "string", "description": "What went wrong, for a person."},
        "trace": {"type": "string", "description": "An id also written to the server's log."},
    },
    "required": ["subcode", "description", "trace"],
}
METHODS = ("get", "put", "post", "patch", "delete")
# Codes particular to an operation, beyond those its shape implies (by operation id).
EXTRA_CODES = {
    # A throttle.
    "create_user_secret": {429},
    # The body names an object (a role, an upload) that may not exist.
    "create_user": {404},
    "create_batch": {404},
    # A role still held by users.
    "delete_user_role": {409},
}


def error_responses(*codes: int) -> dict:
    """For extend_schema(responses={200: X, **error_responses(409)})."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_MEANINGS[code]) for code in codes}


def _error_response(code: int) -> dict:
    return {
        "description": ERROR_MEANINGS[code],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}},
    }


def _codes_for(operation: dict) -> set[int]:
    codes = set()
    if any(requirement for requirement in operation.get("security", [])):
        codes |= {401, 403}
    parameters = operation.get("parameters", [])
    if any(parameter["in"] == "path" for parameter in parameters):
        codes.add(404)
    if parameters or "requestBody" in operation:
        codes.add(400)
    if "requestBody" in operation:
        codes |= {413, 415}
    return codes | EXTRA_CODES.get(operation.get("operationId"), set())


def _links_to(parameter: str, expression: str, *operation_ids: str) -> dict:
    return {
        "".join(part.title() for part in operation_id.split("_")): {
            "operationId": operation_id,
            "parameters": {parameter: expression},
        }
        for operation_id in operation_ids
    }


# (from operation, status) → {link name: link}. The upload URL's token is taken out of `url`
# with a regex (a schemathesis extension of runtime expressions; other tools ignore links
# they cannot follow).
LINKS = {
    ("create_upload_url", "201"): {
        "UploadFile": {
            "operationId": "upload_file",
            "parameters": {"token": "$response.body#/url#regex:/uploads/([^/?#]+)"},
        },
        "InvalidateUploadUrl": {
            "operationId": "invalidate_upload_url",
            "parameters": {"handler": "$response.body#/handler"},
        },
    },
    ("upload_file", "200"): {
        "CreateBatch": {
            "operationId": "create_batch",
            "requestBody": {"handler": "$response.body#/handler", "operation": "create_twin"},
        },
    },
    ("create_batch", "201"): _links_to(
        "batch", "$response.body#/batch", "get_batch", "update_batch", "delete_batch", "retry_batch"
    ),
    ("create_user_role", "201"): {
        **_links_to("role", "$response.body#/uuid", "get_user_role", "update_user_role", "delete_user_role"),
        "CreateUser": {"operationId": "create_user", "requestBody": {"role": "$response.body#/uuid"}},
    },
    ("create_user", "201"): _links_to(
        "user",
        "$response.body#/uuid",
        "get_user",
        "update_user",
        "delete_user",
        "create_user_secret_pin",
        "get_user_secret",
        "update_user_secret",
        "delete_user_secret",
    ),
    ("create_twin", "201"): _links_to(
        "twin",
        "$response.body#/creation_certificate/uuid",
        "get_twin",
        "update_twin",
        "terminate_twin",
        "create_twin_identity",
        "get_twin_identities",
        "add_twin_ledger_entry",
        "get_twin_ledger_entry",
        "update_twin_ledger_entry",
        "delete_twin_ledger_entry",
    ),
}


# Path parameters routed as plain strings (`<str:batch>`), as the views check them: a batch or
# handler that is not a uuid is simply not found (404), like an unknown one.
PATH_PARAMETER_SCHEMAS = {
    "batch": {"type": "string", "format": "uuid"},
    "handler": {"type": "string", "format": "uuid"},
    "account": {"type": "string", "format": "uuid"},
    # Six characters, upper-case letters and digits, taken in either case.
    "pin": {"type": "string", "pattern": "^[A-Za-z0-9]{6}$"},
}

# Bodies whose view refuses any field it does not name.
CLOSED_BODIES = {"BatchUpdate"}


def _json_schema_nulls(node):
    """OpenAPI 3.0's `nullable` (left in hand-written field schemas) as 3.1's `"null"` type."""
    if isinstance(node, list):
        return [_json_schema_nulls(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _json_schema_nulls(value) for key, value in node.items()}
    if node.pop("nullable", False):
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        elif isinstance(kind, list):
            node["type"] = [*kind, "null"] if "null" not in kind else kind
        else:
            node = {"oneOf": [node, {"type": "null"}]}
    return node


def complete_operations(result, generator, request, public):
    result = _json_schema_nulls(result)
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(ERROR_COMPONENT, ERROR_SCHEMA)
    for name in CLOSED_BODIES & set(schemas):
        schemas[name]["additionalProperties"] = False
    for path_item in result.get("paths", {}).values():
        for method in METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in PATH_PARAMETER_SCHEMAS:
                    parameter["schema"] = dict(PATH_PARAMETER_SCHEMAS[parameter["name"]])
            responses = operation.setdefault("responses", {})
            for code in sorted(_codes_for(operation)):
                responses.setdefault(str(code), _error_response(code))
            for (operation_id, status), links in LINKS.items():
                if operation.get("operationId") == operation_id and status in responses:
                    responses[status].setdefault("links", {}).update(links)
    return result

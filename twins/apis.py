"""REST views generated from the registry: one thin view per route, each HTTP method handing
its validated input to the registered operation, through the same `run_one` a batch uses."""

from collections.abc import Iterable
from itertools import groupby

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from batchsite.errors import error_response
from twins.registry import Actor, Operation, OperationError, run_one
from twins.serializers import INPUT_FIELDS

BODY_METHODS = ("POST", "PATCH")


def request_input(operation: Operation, request, path_params: dict) -> dict:
    """The operation's input: body or query fields, then the path parameters, which win."""
    data = {}
    if operation.method in BODY_METHODS:
        if not isinstance(request.data, dict):
            raise exceptions.ParseError("The body must be a JSON object.")
        data.update(request.data)
    for name in operation.query_fields:
        if name in request.query_params:
            data[name] = request.query_params[name]
    data.update({name: str(value) for name, value in path_params.items()})
    return data


def _without(operation: Operation, suffix: str, keep: Iterable[str]) -> type | None:
    """The operation's input serializer restricted to some fields, for the schema."""
    serializer = operation.input_serializer
    kept = set(keep)
    if not kept & set(serializer._declared_fields):
        return None
    name = "".join(part.title() for part in operation.name.split("_")) + suffix
    return type(
        name, (serializer,), {field: None for field in serializer._declared_fields if field not in kept}
    )


def _parameter(field, location: str) -> OpenApiParameter:
    """A path or query parameter with the field's whole schema (pattern, range, format)."""
    schema = dict(field.schema)
    if field.allow_null:
        schema.pop("nullable", None)
    return OpenApiParameter(
        field.name,
        schema,
        location,
        required=location == OpenApiParameter.PATH or field.required,
        description=schema.pop("description", "") or field.help_text,
        # Lists go comma-separated in a query string (`entries=a,b`).
        explode=False if schema.get("type") == "array" else None,
    )


def _schema(operation: Operation):
    fields = {field.name: field for field in INPUT_FIELDS[operation.name]}
    path = [_parameter(fields[name], OpenApiParameter.PATH) for name in operation.path_fields]
    query = [_parameter(fields[name], OpenApiParameter.QUERY) for name in operation.query_fields]
    body_fields = set(operation.input_serializer._declared_fields) - {
        *operation.path_fields,
        *operation.query_fields,
    }
    return extend_schema(
        operation_id=operation.name,
        description=operation.description,
        parameters=path + query,
        request=_without(operation, "Request", body_fields) if operation.method in BODY_METHODS else None,
        responses={operation.success_status: operation.response_serializer},
    )


def _method(operation: Operation):
    def handle(self, request, **path_params):
        data = operation.validate_input(request_input(operation, request, path_params))
        outcome = run_one(
            operation.handler, actor=Actor(user=request.user, account=request.account), data=data
        )
        if isinstance(outcome, OperationError):
            return error_response(outcome.status, outcome.subcode, outcome.description)
        return Response(outcome.body, status=outcome.status)

    handle.__name__ = operation.method.lower()
    return _schema(operation)(handle)


def route_view(route: str, operations: list[Operation]) -> type[APIView]:
    attrs = {"required_actions": {operation.method: operation.name for operation in operations}}
    for operation in operations:
        attrs[operation.method.lower()] = _method(operation)
    name = "".join(part.title() for part in operations[0].name.split("_")) + "Api"
    return type(name, (APIView,), attrs)


def route_views(operations: Iterable[Operation]) -> dict[str, type[APIView]]:
    by_route = sorted(operations, key=lambda operation: operation.route)
    return {
        route: route_view(route, list(group)) for route, group in groupby(by_route, key=lambda op: op.route)
    }

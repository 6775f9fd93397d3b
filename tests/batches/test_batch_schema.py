"""The OpenAPI schema of the upload and batch routes."""

import functools

import jsonschema
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from hypothesis import given, settings
from hypothesis import strategies as st

from batches.controls import error_budget_clean

OPERATIONS = {
    ("/cache", "post"): "create_upload_url",
    ("/cache/{handler}", "delete"): "invalidate_upload_url",
    ("/uploads/{token}", "put"): "upload_file",
    ("/downloads/{token}", "get"): "download_file",
    ("/batches", "post"): "create_batch",
    ("/batches", "get"): "get_batches",
    ("/batches/{batch}", "get"): "get_batch",
    ("/batches/{batch}", "patch"): "update_batch",
    ("/batches/{batch}", "delete"): "delete_batch",
    ("/batches/{batch}/retry", "post"): "retry_batch",
}


def test_schema_validates_and_documents_every_route_with_its_errors():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    for (path, method), operation_id in OPERATIONS.items():
        operation = schema["paths"][path][method]
        assert operation["operationId"] == operation_id
        errors = {
            code: answer for code, answer in operation["responses"].items() if code.startswith(("4", "5"))
        }
        assert errors, f"{method} {path} documents no error"
        for answer in errors.values():
            assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    create = schema["paths"]["/batches"]["post"]
    assert {"400", "403", "409"} <= set(create["responses"])
    assert any(parameter["name"] == "Idempotency-Key" for parameter in create["parameters"])
    assert {"status", "operation", "ge", "le", "limit", "cursor"} <= {
        parameter["name"] for parameter in schema["paths"]["/batches"]["get"]["parameters"]
    }


def test_spectacular_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


@functools.cache
def error_budget_validator() -> jsonschema.Draft202012Validator:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return jsonschema.Draft202012Validator(
        schema["components"]["schemas"]["BatchCreate"]["properties"]["error_budget"]
    )


budget_values = st.one_of(
    st.integers(min_value=-2, max_value=3),
    st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.1, True, None, "1"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["max_failed", "max_failed_ratio", "min_lines", "other"]), budget_values, max_size=4
    )
)
def test_the_schema_of_error_budget_admits_exactly_what_the_api_accepts(budget):
    try:
        error_budget_clean(budget)
        accepted = True
    except ValidationError:
        accepted = False
    assert error_budget_validator().is_valid(budget) == accepted, budget


def test_mixed_line_schema_holds_each_operations_line_with_references_and_refuses_others():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    assert "mixed" in components["OperationEnum"]["enum"]
    resolver = {"$ref": "#/components/schemas/MixedLine", "components": schema["components"]}
    check = functools.partial(jsonschema.validate, schema=resolver, cls=jsonschema.Draft202012Validator)
    twin = {"$ref": "t1.creation_certificate.uuid"}
    for line in (
        {"op": "create_twin", "ref": "t1", "description": {"serial": 1}},
        {"op": "create_twin_identity", "twin": twin, "identities": {"RFID#1": {}}},
        {"op": "add_twin_ledger_entry", "twin": twin, "entries": {"installed": {"value": 1}}},
    ):
        check(line)
    for line in (
        {"op": "scan_twins"},
        {"op": "create_twin", "ref": "1st"},
        {"op": "get_twin", "twin": {"$ref": "t1..uuid"}},
        {"twin": twin},
    ):
        with pytest.raises(jsonschema.ValidationError):
            check(line)

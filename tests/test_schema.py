"""The published schema of every route: its errors, path ids and links (batchsite/schema.py).
schemathesis holds the API to it in tests/test_schema_fuzz.py."""

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_operation_documents_the_errors_its_shape_implies(schema):
    assert schema["openapi"].startswith("3.1")
    for path, method, operation in operations(schema):
        codes = set(operation["responses"])
        label = f"{method} {path}"
        if any(requirement for requirement in operation.get("security", [])):
            assert {"401", "403"} <= codes, label
        if "{" in path:
            assert "404" in codes, label
        if "requestBody" in operation:
            assert {"400", "415"} <= codes, label
        for code in {code for code in codes if code.startswith(("4", "5"))}:
            assert operation["responses"][code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, label
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {"subcode", "description", "trace"}


ID_PARAMETERS = {"batch", "handler", "role", "user", "twin", "account"}


def test_path_ids_are_uuids(schema):
    for path, method, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] in ID_PARAMETERS:
                assert parameter["schema"].get("format") == "uuid", f"{method} {path} {parameter['name']}"


def test_links_lead_from_created_objects_to_their_operations(schema):
    def links(path, method, status):
        found = schema["paths"][path][method]["responses"][status].get("links", {})
        return {link["operationId"] for link in found.values()}

    assert links("/cache", "post", "201") == {"upload_file", "invalidate_upload_url"}
    assert links("/uploads/{token}", "put", "200") == {"create_batch"}
    assert links("/batches", "post", "201") == {"get_batch", "update_batch", "delete_batch", "retry_batch"}
    assert "get_twin" in links("/twins", "post", "201")

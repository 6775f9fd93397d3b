"""The schema of a mixed batch's lines (docs/contract.md, section 16), added to the OpenAPI
schema's components by a drf-spectacular postprocessing hook: `MixedLine` is one of a line per
batchable operation (`op` its name, then that operation's input fields, each of which may be a
`BatchRef` instead), built from the same input fields the operations validate with. A
reference may also stand deeper, inside a field's value (a description's or an entry's value,
an identity's `validity_ts`); the schema shows it at the top level only."""

from batches.pipeline.mixed import MIXED, OP_KEY, REF_KEY, REF_NAME, REFERENCE_KEY
from twins.registry import batchable_operations
from twins.serializers import INPUT_FIELDS

REF_COMPONENT, LINE_COMPONENT = "BatchRef", "MixedLine"
REF_SCHEMA = {
    "type": "object",
    "description": "The value at `path` of the 2xx result body of the earlier line named `name`.",
    "properties": {
        REFERENCE_KEY: {
            "type": "string",
            "pattern": f"^{REF_NAME.pattern}(\\.[^.]+)*$",
            "examples": ["t1.creation_certificate.uuid"],
        },
    },
    "required": [REFERENCE_KEY],
    "additionalProperties": False,
}


def line_schema(name: str) -> dict:
    fields = INPUT_FIELDS[name]
    properties = {
        OP_KEY: {"const": name},
        REF_KEY: {"type": "string", "pattern": f"^{REF_NAME.pattern}$"},
        **{
            field.name: {"anyOf": [field.schema, {"$ref": f"#/components/schemas/{REF_COMPONENT}"}]}
            for field in fields
        },
    }
    required = [OP_KEY, *(field.name for field in fields if field.required)]
    return {"type": "object", "title": name, "properties": properties, "required": required}


def mixed_line_schema(result, generator, request, public):
    """drf-spectacular postprocessing hook: adds `BatchRef` and `MixedLine`."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[REF_COMPONENT] = REF_SCHEMA
    schemas[LINE_COMPONENT] = {
        "description": f"A line of a batch of operation `{MIXED}`: one of a line per operation.",
        "oneOf": [line_schema(operation.name) for operation in batchable_operations()],
    }
    return result

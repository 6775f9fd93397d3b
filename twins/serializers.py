"""Operation inputs as DRF serializers, built from the field declarations of
`twins.validation`; and the response shapes, for the schema only (bodies are built by
`twins.bodies`, without DRF, because a batch builds millions of them)."""

from typing import Any

from drf_spectacular.drainage import set_override
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from batchsite.timestamps import TS_SCHEMA as BASE_TS_SCHEMA
from twins import validation as v

UUID_SCHEMA = {"type": "string", "format": "uuid"}
UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
LEDGER_SCHEMA = {
    "type": "string",
    "pattern": f"^({v.PERSONAL_LEDGER}|{UUID_PATTERN})$",
    "description": "`personal` or the account's uuid",
    "default": "personal",
}
JSON_OBJECT_SCHEMA = {"type": "object", "additionalProperties": {}}
RULE_SCHEMA = {"type": "string", "nullable": True, "maxLength": v.RULE_MAX_LENGTH}
TS_SCHEMA = {**BASE_TS_SCHEMA, "nullable": True}


class ParsedField(serializers.Field):
    """A field whose value is checked by one of `twins.validation`'s parsers."""

    def __init__(self, *, parse, schema: dict, **kwargs):
        self.parse = parse
        super().__init__(**kwargs)
        set_override(self, "field", schema)

    def to_internal_value(self, data: Any) -> Any:
        return self.parse(data)

    def to_representation(self, value: Any) -> Any:
        return value


def input_serializer(name: str, fields: tuple[v.InputField, ...]) -> type[serializers.Serializer]:
    declared = {}
    for field in fields:
        options = {"required": field.required, "allow_null": field.allow_null, "help_text": field.help_text}
        if field.has_default:
            options.update(required=False, default=field.default)
        declared[field.name] = ParsedField(parse=field.parse, schema=field.schema, **options)
    return type(name, (serializers.Serializer,), declared)


def _field(name, parse, schema, **options) -> v.InputField:
    return v.InputField(name=name, parse=parse, schema=schema, **options)


TWIN = _field("twin", v.parse_uuid, UUID_SCHEMA)
LEDGER = _field("ledger", v.parse_ledger, LEDGER_SCHEMA, required=False, default=v.PERSONAL_LEDGER)
IDENTITY = _field("identity", v.parse_identity, {"type": "string", "pattern": f"^{v.IDENTITY.pattern}$"})
ENTRY_KEYS = {
    "type": "array",
    "items": {"type": "string", "pattern": f"^{v.ENTRY_KEY.pattern}$"},
    "minItems": 1,
    "description": "A list in a batch line; comma-separated in a query string.",
}
ENTRY_FIELDS = {"value": {}, "visibility": RULE_SCHEMA}


def entries_schema(*, value_required: bool) -> dict:
    entry = {"type": "object", "properties": ENTRY_FIELDS, "additionalProperties": False}
    if value_required:
        entry["required"] = ["value"]
    else:
        entry["minProperties"] = 1
    return {
        "type": "object",
        "description": f"Keys match ^{v.ENTRY_KEY.pattern}$; each value's JSON at most "
        f"{v.ENTRY_VALUE_MAX_BYTES} bytes.",
        "minProperties": 1,
        "propertyNames": {"pattern": f"^{v.ENTRY_KEY.pattern}$"},
        "additionalProperties": entry,
    }


NEW_ENTRIES_SCHEMA = entries_schema(value_required=True)
ENTRY_CHANGES_SCHEMA = entries_schema(value_required=False)
DESCRIPTION_SCHEMA = {
    "type": "object",
    "additionalProperties": {},
    "propertyNames": {"pattern": f"^{v.DESCRIPTION_KEY.pattern}$"},
    "description": f"Keys match ^{v.DESCRIPTION_KEY.pattern}$; "
    f"at most {v.DESCRIPTION_MAX_BYTES} bytes as JSON.",
}

INPUT_FIELDS: dict[str, tuple[v.InputField, ...]] = {
    "create_twin": (
        _field(
            "description",
            v.parse_description,
            DESCRIPTION_SCHEMA,
            required=False,
            allow_null=True,
            default=None,
        ),
    ),
    "get_twin": (
        TWIN,
        _field("show_terminated", v.parse_bool, {"type": "boolean"}, required=False, default=False),
    ),
    "update_twin": (
        TWIN,
        _field(
            "description",
            v.parse_description,
            {**DESCRIPTION_SCHEMA, "description": "A null value removes its key."},
        ),
    ),
    "terminate_twin": (TWIN,),
    "scan_twins": (
        _field("cursor", v.parse_cursor, {"type": "string"}, required=False, allow_null=True, default=None),
        _field(
            "count",
            v.parse_count,
            {"type": "integer", "minimum": 1, "maximum": v.SCAN_COUNT_MAX},
            required=False,
            default=100,
        ),
    ),
    "create_twin_identity": (
        TWIN,
        _field(
            "identities",
            v.parse_identities,
            {
                "type": "object",
                "description": f"Identities match ^{v.IDENTITY.pattern}$.",
                "minProperties": 1,
                "propertyNames": {"pattern": f"^{v.IDENTITY.pattern}$"},
                "additionalProperties": {
                    "type": "object",
                    "properties": {"validity_ts": TS_SCHEMA, "visibility": RULE_SCHEMA},
                    "additionalProperties": False,
                },
            },
        ),
    ),
    "get_twin_identities": (TWIN,),
    "delete_twin_identity": (TWIN, IDENTITY),
    "resolve_twin_identity": (IDENTITY,),
    "add_twin_ledger_entry": (TWIN, LEDGER, _field("entries", v.parse_new_entries, NEW_ENTRIES_SCHEMA)),
    "get_twin_ledger_entry": (
        TWIN,
        LEDGER,
        _field("entries", v.parse_entry_keys, ENTRY_KEYS, required=False, allow_null=True, default=None),
    ),
    "update_twin_ledger_entry": (
        TWIN,
        LEDGER,
        _field("entries", v.parse_entry_changes, ENTRY_CHANGES_SCHEMA),
    ),
    "delete_twin_ledger_entry": (TWIN, LEDGER, _field("entries", v.parse_entry_keys, ENTRY_KEYS)),
}


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


INPUT_SERIALIZERS = {
    name: input_serializer(f"{_camel(name)}Input", fields) for name, fields in INPUT_FIELDS.items()
}


class CreationCertificateSerializer(serializers.Serializer):
    uuid = serializers.UUIDField()
    created_ts = serializers.FloatField()
    creator = serializers.UUIDField()


class TerminationCertificateSerializer(serializers.Serializer):
    issuer = serializers.UUIDField()
    terminated_ts = serializers.FloatField()


@extend_schema_field({"type": "string", "enum": ["alive", "terminated"]})
class TwinStatusField(serializers.CharField):
    """A choice without a named enum component, which the batch status already claims."""


class TwinSerializer(serializers.Serializer):
    status = TwinStatusField()
    owner = serializers.UUIDField()
    updated_ts = serializers.FloatField()
    creation_certificate = CreationCertificateSerializer()
    description = serializers.JSONField(required=False, help_text="Left out when the twin has none.")
    termination_certificate = TerminationCertificateSerializer(required=False)


class TwinScanSerializer(serializers.Serializer):
    twins = serializers.ListField(child=serializers.UUIDField())
    cursor = serializers.CharField(allow_null=True)


class IdentityCertificateSerializer(serializers.Serializer):
    created_ts = serializers.FloatField()
    creator = serializers.UUIDField()
    identity = serializers.CharField()


class IdentitySerializer(serializers.Serializer):
    validity_ts = serializers.FloatField(allow_null=True)
    visibility = serializers.CharField(allow_null=True)
    created_ts = serializers.FloatField()
    updated_ts = serializers.FloatField()
    creation_certificate = IdentityCertificateSerializer()


class IdentitiesSerializer(serializers.Serializer):
    identities = serializers.DictField(child=IdentitySerializer())


class IdentitySummarySerializer(serializers.Serializer):
    validity_ts = serializers.FloatField(allow_null=True)
    created_ts = serializers.FloatField()
    updated_ts = serializers.FloatField()


class IdentitySummariesSerializer(serializers.Serializer):
    identities = serializers.DictField(child=IdentitySummarySerializer())


class ResolvedTwinsSerializer(serializers.Serializer):
    twins = serializers.ListField(child=serializers.UUIDField())


class LedgerEntrySerializer(serializers.Serializer):
    value = serializers.JSONField()
    visibility = serializers.CharField(allow_null=True)
    entry_created_ts = serializers.FloatField()
    entry_updated_ts = serializers.FloatField()
    value_changed_ts = serializers.FloatField()


class LedgerEntriesSerializer(serializers.Serializer):
    entries = serializers.DictField(child=LedgerEntrySerializer())

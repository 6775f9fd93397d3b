from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from batches.controls import DEFAULT_MIN_LINES, error_budget_clean
from batches.models import BatchStatus
from batches.validators import BATCH_DICT_KEY_PATTERN, HASH_PATTERN, batch_dict_validate, hash_validator
from batchsite.fields import CursorField, ListQuerySerializer, StrictCharField
from batchsite.timestamps import TS_MAX, TimestampField
from twins.registry import batchable_operations

LIMIT_MAX = 1000


class UploadUrlSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="PUT the file here; the URL is its own credential.")
    handler = serializers.UUIDField(source="upload.handler")
    validity_ts = TimestampField(source="upload.expires_at")


class HandlerSerializer(serializers.Serializer):
    handler = serializers.UUIDField()


class UploadStoredSerializer(serializers.Serializer):
    handler = serializers.UUIDField()
    size = serializers.IntegerField(help_text="Bytes stored.")


@extend_schema_field(
    {"type": "object", "additionalProperties": True, "propertyNames": {"pattern": BATCH_DICT_KEY_PATTERN}}
)
class BatchDictField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": False,
        "description": "Stop the batch, as a cancel does, once its failed lines pass this budget. Give "
        "max_failed, max_failed_ratio or both; other values are 400 invalid_error_budget.",
        "properties": {
            "max_failed": {
                "type": "integer",
                "minimum": 0,
                "description": "Stop once more lines than this failed (0: at the first failure).",
            },
            "max_failed_ratio": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1,
                "description": "Stop once failed / run lines is more than this, judged from min_lines on.",
            },
            "min_lines": {
                "type": "integer",
                "minimum": 1,
                "default": DEFAULT_MIN_LINES,
                "description": "Lines that must have run before the ratio is judged (with max_failed_ratio).",
            },
        },
        # At least one limit, and min_lines only beside the ratio it is for.
        "anyOf": [
            {"required": ["max_failed_ratio"]},
            {"required": ["max_failed"], "not": {"required": ["min_lines"]}},
        ],
    }
)
class ErrorBudgetField(serializers.JSONField):
    pass


@extend_schema_field({"type": "string", "format": "uuid"})
class HandlerField(StrictCharField):
    """A handler from POST /cache; anything else is refused as handler_unknown."""


@extend_schema_field({"type": "string", "pattern": HASH_PATTERN})
class HashField(serializers.CharField):
    def to_internal_value(self, data):
        # Not a string is no more a SHA-256 than a wrong string: the same subcode.
        if not isinstance(data, str):
            raise serializers.ValidationError(hash_validator.message, code=hash_validator.code)
        return super().to_internal_value(data)


class OperationNameField(StrictCharField):
    """A batchable operation's name; the schema lists them (the registry is filled at start)."""

    @property
    def _spectacular_annotation(self):
        names = sorted(operation.name for operation in batchable_operations())
        return {"field": {"type": "string", "enum": names}}


class BatchCreateSerializer(serializers.Serializer):
    handler = HandlerField(max_length=100, help_text="From POST /cache, with a file PUT to it.")
    operation = OperationNameField(max_length=64, help_text="A batchable operation, e.g. create_twin.")
    hash = HashField(
        required=False,
        allow_null=True,
        allow_blank=True,
        validators=[hash_validator],
        help_text=f"SHA-256 of the file, matching {HASH_PATTERN}.",
    )
    batch_dict = BatchDictField(
        required=False,
        allow_null=True,
        validators=[batch_dict_validate],
        help_text="Your own key-value pairs, echoed back; keys ^[a-z_][0-9a-z_]{0,63}$, at most 64 KiB.",
    )
    error_budget = ErrorBudgetField(required=False, allow_null=True)
    validate_only = serializers.BooleanField(
        required=False,
        default=False,
        help_text="A dry run: the batch stops after validation, completed with nothing executed and "
        "every line listed as validate_only in its results, or validation_failed as usual.",
    )

    def validate_error_budget(self, value):
        return error_budget_clean(value)

    def validate_hash(self, value):
        # Blank skips the field's validators, yet it is no more a SHA-256 than any other string.
        if value == "":
            hash_validator(value)
        return value

    def validate(self, attrs):
        attrs["hash"] = attrs.get("hash") or ""
        attrs.setdefault("batch_dict", None)
        attrs.setdefault("error_budget", None)
        return attrs


class BatchUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["cancel"], help_text='"cancel" is the only change allowed.')

    def to_internal_value(self, data):
        if data != {"status": "cancel"}:
            raise serializers.ValidationError(
                {"status": 'The only change allowed is {"status": "cancel"}.'}, code="unsupported_change"
            )
        return super().to_internal_value(data)


class BatchListQuerySerializer(ListQuerySerializer):
    status = serializers.ChoiceField(choices=BatchStatus.choices, required=False)
    operation = serializers.CharField(required=False, max_length=64)
    ge = serializers.FloatField(
        required=False, min_value=0, max_value=TS_MAX, help_text="Created at or after (Unix seconds)."
    )
    le = serializers.FloatField(
        required=False, min_value=0, max_value=TS_MAX, help_text="Created at or before (Unix seconds)."
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=LIMIT_MAX, default=LIMIT_MAX)
    cursor = CursorField(required=False, help_text="From the previous page; opaque (URL-safe base64).")


class BatchDetailQuerySerializer(serializers.Serializer):
    download = serializers.BooleanField(required=False, default=False)
    part = serializers.ChoiceField(choices=["results", "errors"], required=False, default="results")


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField(allow_null=True)
    processed = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()


class DownloadSerializer(serializers.Serializer):
    url = serializers.URLField()
    validity_ts = TimestampField(source="expires_at")
    partial = serializers.BooleanField(
        required=False,
        help_text="Present (true) while the batch runs: the lines run so far, in line order, in the "
        "results file's format. Absent for the final file.",
    )

    def to_representation(self, signed):
        data = super().to_representation(signed)
        if not data.get("partial"):
            data.pop("partial", None)
        return data


class BatchSerializer(serializers.Serializer):
    """The batch object; `hash`, `batch_dict`, `error_budget`, `validate_only`, `retry_of` and
    `reason` appear only when set."""

    batch = serializers.UUIDField(source="uuid")
    operation = serializers.CharField()
    status = serializers.ChoiceField(choices=BatchStatus.choices)
    created_ts = TimestampField(source="created_at")
    updated_ts = TimestampField(source="updated_at")
    hash = serializers.CharField(required=False)
    batch_dict = BatchDictField(required=False)
    error_budget = ErrorBudgetField(required=False)
    validate_only = serializers.BooleanField(required=False, help_text="Present (true) for a dry run.")
    retry_of = serializers.UUIDField(source="retry_of_id", required=False)
    reason = serializers.CharField(
        source="failure_reason",
        required=False,
        help_text="Why the batch stopped, when it failed or its error budget was exceeded "
        "(then it starts with error_budget_exceeded).",
    )
    progress = serializers.SerializerMethodField()

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, batch):
        return ProgressSerializer(batch).data

    def to_representation(self, batch):
        data = super().to_representation(batch)
        unset_values = (
            ("hash", ""),
            ("batch_dict", None),
            ("error_budget", None),
            ("validate_only", False),
            ("retry_of", None),
            ("reason", ""),
        )
        for key, unset in unset_values:
            if data.get(key) == unset:
                data.pop(key)
        return data


class BatchDownloadSerializer(BatchSerializer):
    download = DownloadSerializer(required=False)


class BatchPageSerializer(serializers.Serializer):
    batches = serializers.DictField(
        child=serializers.ChoiceField(choices=BatchStatus.choices), help_text="Batch uuid → status."
    )
    cursor = serializers.CharField(
        allow_null=True, help_text="Pass as ?cursor= for the next page; null at the end."
    )

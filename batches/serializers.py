from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from batches.controls import DEFAULT_MIN_LINES, error_budget_clean
from batches.models import BatchStatus
from batches.pipeline.mixed import MIXED
from batches.selectors import STATUS_REASONS, batch_summary, batch_waiting
from batches.validators import (
    AFTER_MAX,
    BATCH_DICT_KEY_PATTERN,
    COMPLETE_WITHIN_MAX,
    ECHO_FIELDS_MAX,
    HASH_PATTERN,
    ID_FIELD_MAX_LENGTH,
    PRIORITY_DEFAULT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    REQUIREMENTS,
    after_clean,
    batch_dict_validate,
    complete_within_clean,
    echo_fields_clean,
    hash_validator,
    id_field_clean,
    priority_clean,
    timestamp_clean,
)
from batchsite.fields import CursorField, ListQuerySerializer, StrictCharField
from batchsite.timestamps import TS_MAX, TS_SCHEMA, TimestampField, to_ts
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


FIELD_NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": ID_FIELD_MAX_LENGTH}


# Both take any JSON value, so that a wrong one is refused by the service's own check with its
# subcode (invalid_id_field, invalid_echo_fields) rather than DRF's generic invalid_input.
@extend_schema_field(
    {
        "type": "string",
        "maxLength": ID_FIELD_MAX_LENGTH,
        "description": "The JSON Lines key or CSV column holding each line's own id, taken out of the "
        'line and echoed as its result line\'s "id"; null or "" for none.',
    }
)
class IdFieldField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "type": "array",
        "items": FIELD_NAME_SCHEMA,
        "maxItems": ECHO_FIELDS_MAX,
        "uniqueItems": True,
        "description": "Fields copied from each input line into its result line as "
        '"input": {name: value}; null or [] for none.',
    }
)
class EchoFieldsField(serializers.JSONField):
    pass


# Time and order (section 14). Like id_field, each takes any JSON value, so that a wrong one is
# refused with the subcode naming the field rather than DRF's generic invalid_input.
@extend_schema_field(
    {
        **TS_SCHEMA,
        "description": "Start no earlier than this (Unix seconds); until then the batch stays new, "
        "status_reason scheduled. A past time starts it at once; null for none.",
    }
)
class NotBeforeField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        **TS_SCHEMA,
        "description": "Stop the batch, as a cancel does (reason deadline_exceeded), if it has not "
        "ended by this time (Unix seconds). Must be in the future (and after not_before); null for none. "
        "Not with complete_within.",
    }
)
class DeadlineField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": COMPLETE_WITHIN_MAX,
        "description": "The deadline as seconds from now (the server's clock); not with deadline_ts. "
        "Refused as invalid_deadline.",
    }
)
class CompleteWithinField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "type": "integer",
        "minimum": PRIORITY_MIN,
        "maximum": PRIORITY_MAX,
        "default": PRIORITY_DEFAULT,
        "description": "Among the account's batches, a higher priority starts first; never takes "
        "another account's share.",
    }
)
class PriorityField(serializers.JSONField):
    pass


AFTER_ITEM_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["batch"],
    "properties": {
        "batch": {"type": "string", "format": "uuid", "description": "A batch of the same account."},
        "require": {
            "type": "string",
            "enum": list(REQUIREMENTS),
            "default": "completed",
            "description": "completed: it completed; no_failures: it completed with no failed line; "
            "terminal: it ended, however.",
        },
    },
}


@extend_schema_field(
    {
        "type": "array",
        "items": AFTER_ITEM_SCHEMA,
        "maxItems": AFTER_MAX,
        "description": "Start only once each of these batches met its requirement (status_reason "
        "waiting_dependency until then); a requirement that can no longer be met cancels the batch "
        "(reason dependency_failed). An unknown batch, or another account's, is 404.",
    }
)
class AfterField(serializers.JSONField):
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
    """A batchable operation's name, or `mixed`; the schema lists them (the registry is filled
    at start)."""

    @property
    def _spectacular_annotation(self):
        names = sorted([MIXED, *(operation.name for operation in batchable_operations())])
        return {"field": {"type": "string", "enum": names}}


class BatchCreateSerializer(serializers.Serializer):
    handler = HandlerField(max_length=100, help_text="From POST /cache, with a file PUT to it.")
    operation = OperationNameField(
        max_length=64,
        help_text="A batchable operation, e.g. create_twin; or mixed: each line names its own "
        "(`op`) and may refer to earlier lines' results (schema MixedLine).",
    )
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
    id_field = IdFieldField(required=False, allow_null=True)
    echo_fields = EchoFieldsField(required=False, allow_null=True)
    not_before = NotBeforeField(required=False, allow_null=True)
    deadline_ts = DeadlineField(required=False, allow_null=True)
    complete_within = CompleteWithinField(required=False, allow_null=True)
    priority = PriorityField(required=False, allow_null=True)
    after = AfterField(required=False, allow_null=True)

    def validate_not_before(self, value):
        return timestamp_clean(value, field="not_before", code="invalid_not_before")

    def validate_deadline_ts(self, value):
        return timestamp_clean(value, field="deadline_ts", code="invalid_deadline")

    def validate_complete_within(self, value):
        return complete_within_clean(value)

    def validate_priority(self, value):
        return PRIORITY_DEFAULT if value is None else priority_clean(value)

    def validate_after(self, value):
        return after_clean(value)

    def validate_error_budget(self, value):
        return error_budget_clean(value)

    def validate_id_field(self, value):
        return id_field_clean(value)

    def validate_echo_fields(self, value):
        return echo_fields_clean(value)

    def validate_hash(self, value):
        # Blank skips the field's validators, yet it is no more a SHA-256 than any other string.
        if value == "":
            hash_validator(value)
        return value

    def validate(self, attrs):
        attrs["hash"] = attrs.get("hash") or ""
        attrs.setdefault("batch_dict", None)
        attrs.setdefault("error_budget", None)
        attrs["id_field"] = attrs.get("id_field") or ""
        attrs["echo_fields"] = attrs.get("echo_fields") or []
        deadline_from_both(attrs)
        attrs.setdefault("priority", PRIORITY_DEFAULT)
        attrs["after"] = attrs.get("after") or []
        return attrs


def deadline_from_both(attrs: dict) -> None:
    """deadline_ts (as the service's deadline_at) or complete_within, never both."""
    deadline_at, complete_within = attrs.pop("deadline_ts", None), attrs.get("complete_within")
    if deadline_at is not None and complete_within is not None:
        raise serializers.ValidationError(
            {"deadline_ts": "Give deadline_ts or complete_within, not both."}, code="invalid_deadline"
        )
    attrs["deadline_at"] = deadline_at


class BatchRetrySerializer(serializers.Serializer):
    """A retry's own time and order, all optional: nothing of the batch's schedule is carried over
    (its deadline may be what stopped it) but its priority, unless one is given."""

    not_before = NotBeforeField(required=False, allow_null=True)
    deadline_ts = DeadlineField(required=False, allow_null=True)
    complete_within = CompleteWithinField(required=False, allow_null=True)
    priority = PriorityField(required=False, allow_null=True)

    validate_not_before = BatchCreateSerializer.validate_not_before
    validate_deadline_ts = BatchCreateSerializer.validate_deadline_ts
    validate_complete_within = BatchCreateSerializer.validate_complete_within

    def validate_priority(self, value):
        return None if value is None else priority_clean(value)

    def validate(self, attrs):
        deadline_from_both(attrs)
        if attrs.get("priority") is None:
            attrs.pop("priority", None)
        return attrs


UPDATE_STATUSES = ("cancel", "paused", "processing")


class BatchUpdateSerializer(serializers.Serializer):
    """A change of status, of the schedule, or both; cancel stands alone. Null clears not_before
    or deadline_ts."""

    status = serializers.ChoiceField(
        choices=UPDATE_STATUSES,
        required=False,
        help_text="cancel: stop the batch; paused: pause a processing batch; processing: resume a "
        "paused one. Any other status of the batch is 409.",
    )
    not_before = NotBeforeField(required=False, allow_null=True)
    deadline_ts = DeadlineField(required=False, allow_null=True)
    complete_within = CompleteWithinField(required=False)
    priority = PriorityField(required=False)

    def to_internal_value(self, data):
        if not isinstance(data, dict) or not data or set(data) - set(self.fields):
            raise serializers.ValidationError(
                {"status": f"Change one or more of {', '.join(self.fields)}; nothing else."},
                code="unsupported_change",
            )
        if "status" in data and data["status"] not in UPDATE_STATUSES:
            raise serializers.ValidationError(
                {"status": f"status may change to {', '.join(UPDATE_STATUSES)} only."},
                code="unsupported_change",
            )
        if data.get("status") == "cancel" and len(data) > 1:
            raise serializers.ValidationError(
                {"status": "A cancel changes nothing else: send it alone."}, code="unsupported_change"
            )
        # Neither can be cleared: null is refused as any wrong value, with the field's subcode.
        if "complete_within" in data and data["complete_within"] is None:
            complete_within_clean(0)
        if "priority" in data and data["priority"] is None:
            priority_clean(None)
        return super().to_internal_value(data)

    validate_not_before = BatchCreateSerializer.validate_not_before
    validate_deadline_ts = BatchCreateSerializer.validate_deadline_ts
    validate_complete_within = BatchCreateSerializer.validate_complete_within

    def validate_priority(self, value):
        return priority_clean(value)

    def validate(self, attrs):
        given_deadline = "deadline_ts" in attrs
        deadline_from_both(attrs)
        if not given_deadline and attrs["deadline_at"] is None:
            del attrs["deadline_at"]
        return attrs


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


class DownloadFormatField(serializers.ChoiceField):
    def to_internal_value(self, data):
        if data not in self.choices:
            raise serializers.ValidationError(
                f"{str(data)[:40]!r} is not a download format: {' or '.join(self.choices)}.",
                code="invalid_download_format",
            )
        return data


class BatchDetailQuerySerializer(serializers.Serializer):
    download = serializers.BooleanField(required=False, default=False)
    part = serializers.ChoiceField(choices=["results", "errors"], required=False, default="results")
    format = DownloadFormatField(
        choices=["json", "csv"],
        required=False,
        default="json",
        help_text="The download's format: json (JSON Lines, the results file as stored) or csv "
        "(header line,id,status,subcode,description,result and one input.<name> column per echoed "
        "field).",
    )


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField(allow_null=True)
    processed = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    rate_lps = serializers.FloatField(
        allow_null=True,
        min_value=0,
        help_text="Lines per second over the last minute of processing; null until a chunk has run "
        "and 10 s of processing have passed, and when the batch is not processing.",
    )
    eta_ts = TimestampField(
        allow_null=True, help_text="When processing should end at rate_lps; null while the rate is null or 0."
    )


class QueueSerializer(serializers.Serializer):
    position = serializers.IntegerField(
        min_value=1,
        help_text="1 for the next of its account's batches to start, in the order workers start them.",
    )


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


class SubcodeCountSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    lines = serializers.ListField(
        child=serializers.IntegerField(), max_length=5, help_text="Its first 5 line numbers."
    )


class SummaryFileSerializer(serializers.Serializer):
    lines = serializers.IntegerField()
    bytes = serializers.IntegerField()
    sha256 = serializers.CharField(help_text="SHA-256 of exactly the bytes the download serves.")


class SummarySerializer(serializers.Serializer):
    """The batch's lines accounted for: succeeded + failed + not_executed == total once it ended;
    while it runs (partial), the three add up to the lines done so far."""

    total = serializers.IntegerField(help_text="Non-blank input lines.")
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Lines with a 4xx or 5xx verdict, invalid lines included.")
    not_executed = serializers.IntegerField(help_text="Lines that never ran.")
    by_subcode = serializers.DictField(
        child=SubcodeCountSerializer(),
        help_text="Every failed and never-run line, under the subcode its result line carries.",
    )
    results = SummaryFileSerializer(
        required=False,
        allow_null=True,
        help_text="The results file (?download=true); null when the batch has none. Absent while it runs.",
    )
    errors = SummaryFileSerializer(
        required=False,
        allow_null=True,
        help_text="The errors file (?download=true&part=errors); null when the batch has none. "
        "Absent while it runs.",
    )
    partial = serializers.BooleanField(
        required=False, help_text="Present (true) while the batch runs: the lines done so far."
    )


class RequirementListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        return super().to_representation(data.order_by("pk"))


class RequirementSerializer(serializers.Serializer):
    batch = serializers.UUIDField(source="parent_uuid")
    require = serializers.ChoiceField(choices=REQUIREMENTS)

    class Meta:
        list_serializer_class = RequirementListSerializer


class BatchSerializer(serializers.Serializer):
    """The batch object; `hash`, `batch_dict`, `error_budget`, `validate_only`, `retry_of`,
    `reason`, `not_before`, `deadline_ts` and `after` appear only when set, `id_field`,
    `echo_fields` and `priority` always."""

    batch = serializers.UUIDField(source="uuid")
    operation = serializers.CharField()
    status = serializers.ChoiceField(choices=BatchStatus.choices)
    status_reason = serializers.SerializerMethodField(
        help_text="Why the batch is where it is; null once it ended. waiting_for_worker: no worker has "
        "taken its current step; running; stalled: no progress for BATCH_STALL_AFTER_SECONDS. "
        "scheduled, waiting_dependency and paused are not given yet."
    )
    status_reason_description = serializers.SerializerMethodField(
        help_text="The reason as a sentence for a person; null once the batch ended."
    )
    queue = serializers.SerializerMethodField(
        help_text="While no worker has started the batch (new): its place among its account's batches."
    )
    stalled_since = serializers.SerializerMethodField(
        help_text="While the batch is stalled: its last progress (Unix seconds); null otherwise."
    )
    created_ts = TimestampField(source="created_at")
    updated_ts = TimestampField(source="updated_at")
    hash = serializers.CharField(required=False)
    batch_dict = BatchDictField(required=False)
    error_budget = ErrorBudgetField(required=False)
    validate_only = serializers.BooleanField(required=False, help_text="Present (true) for a dry run.")
    id_field = serializers.SerializerMethodField(
        help_text="The key or column holding each line's id, echoed as each result line's id; null for none."
    )
    echo_fields = serializers.ListField(
        child=serializers.CharField(),
        help_text="The fields copied into each result line's input; [] for none.",
    )
    not_before = TimestampField(required=False, help_text="Not started before this time.")
    deadline_ts = TimestampField(
        source="deadline_at", required=False, help_text="Stopped if not ended by this time."
    )
    priority = serializers.IntegerField(min_value=PRIORITY_MIN, max_value=PRIORITY_MAX)
    after = RequirementSerializer(
        source="requirements",
        many=True,
        required=False,
        help_text="The batches this one starts after, in the order given.",
    )
    retry_of = serializers.UUIDField(source="retry_of_id", required=False)
    reason = serializers.CharField(
        source="failure_reason",
        required=False,
        help_text="Why the batch stopped, when it failed or its error budget was exceeded "
        "(then it starts with error_budget_exceeded).",
    )
    progress = serializers.SerializerMethodField()
    summary = serializers.SerializerMethodField(
        help_text="Once the batch ended, and while its lines run (partial); null before any line can run."
    )

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, batch):
        waiting = self.waiting(batch)
        counts = {name: getattr(batch, name) for name in ("total", "processed", "succeeded", "failed")}
        return ProgressSerializer(
            {**counts, "rate_lps": waiting["rate_lps"], "eta_ts": waiting["eta_ts"]}
        ).data

    def waiting(self, batch) -> dict:
        """batches.selectors.batch_waiting, asked once per batch represented."""
        if getattr(self, "waiting_of", None) is not batch:
            self.waiting_of, self.waiting_found = batch, batch_waiting(batch)
        return self.waiting_found

    @extend_schema_field({"type": ["string", "null"], "enum": [*STATUS_REASONS, None]})
    def get_status_reason(self, batch):
        return self.waiting(batch)["status_reason"]

    @extend_schema_field({"type": ["string", "null"]})
    def get_status_reason_description(self, batch):
        return self.waiting(batch)["status_reason_description"]

    @extend_schema_field(QueueSerializer(allow_null=True))
    def get_queue(self, batch):
        return self.waiting(batch)["queue"]

    @extend_schema_field({**TS_SCHEMA, "type": ["number", "null"]})
    def get_stalled_since(self, batch):
        return to_ts(self.waiting(batch)["stalled_since"])

    @extend_schema_field({"type": ["string", "null"]})
    def get_id_field(self, batch):
        return batch.id_field or None

    @extend_schema_field(SummarySerializer(allow_null=True))
    def get_summary(self, batch):
        return batch_summary(batch)

    def to_representation(self, batch):
        data = super().to_representation(batch)
        unset_values = (
            ("hash", ""),
            ("batch_dict", None),
            ("error_budget", None),
            ("validate_only", False),
            ("retry_of", None),
            ("reason", ""),
            ("not_before", None),
            ("deadline_ts", None),
            ("after", []),
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

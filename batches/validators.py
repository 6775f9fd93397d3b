"""The checks of create_batch's own fields (docs/contract.md, section 3), shared by the service and the
serializers; a leaf module, so the schema's serializers need nothing of the pipeline."""

import json
import math
import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

from batchsite import jsonsafe
from batchsite.timestamps import TS_MAX, from_ts, ts_in_range

HASH_PATTERN = r"^[a-f0-9]{64}$"
BATCH_DICT_KEY_PATTERN = r"^[a-z_][0-9a-z_]{0,63}$"
BATCH_DICT_MAX_BYTES = 64 * 1024

hash_validator = RegexValidator(
    HASH_PATTERN, message="hash must be a lowercase hex SHA-256 (64 characters).", code="invalid_hash"
)
_batch_dict_key_validator = RegexValidator(BATCH_DICT_KEY_PATTERN)


def encoded_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def batch_dict_validate(value) -> None:
    if not isinstance(value, dict):
        raise ValidationError("batch_dict must be a JSON object.", code="invalid_batch_dict")
    refusal = jsonsafe.refusal_of_value(value)
    if refusal:
        raise ValidationError(f"batch_dict: {refusal}", code=jsonsafe.MALFORMED)
    for key in value:
        try:
            _batch_dict_key_validator(key)
        except ValidationError:
            raise ValidationError(
                f"batch_dict key {key!r} must match {BATCH_DICT_KEY_PATTERN}.",
                code="invalid_batch_dict_key",
            ) from None
    size = len(encoded_json(value))
    if size > BATCH_DICT_MAX_BYTES:
        largest = max(value, key=lambda key: len(encoded_json(value[key])))
        raise ValidationError(
            f"batch_dict is {size} bytes encoded, over the limit of {BATCH_DICT_MAX_BYTES}; "
            f"its largest value is under key {largest!r}.",
            code="batch_dict_too_large",
        )


ID_FIELD_MAX_LENGTH = 128
ECHO_FIELDS_MAX = 20


def _field_name_refusal(value) -> str:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > ID_FIELD_MAX_LENGTH:
        return f"is longer than {ID_FIELD_MAX_LENGTH} characters"
    return ""


def id_field_clean(value) -> str:
    """The id field as stored: "" for none. A line's key or column name, so any non-empty string
    of at most ID_FIELD_MAX_LENGTH characters."""
    if value is None or value == "":
        return ""
    refusal = _field_name_refusal(value)
    if refusal:
        raise ValidationError(f"id_field {refusal}.", code="invalid_id_field")
    return value


def echo_fields_clean(value) -> list[str]:
    """The echoed fields as stored: [] for none; at most ECHO_FIELDS_MAX distinct names."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError("echo_fields must be a list of field names.", code="invalid_echo_fields")
    if len(value) > ECHO_FIELDS_MAX:
        raise ValidationError(
            f"echo_fields names {len(value)} fields; at most {ECHO_FIELDS_MAX} are echoed.",
            code="invalid_echo_fields",
        )
    for name in value:
        refusal = _field_name_refusal(name)
        if refusal:
            raise ValidationError(f"echo_fields: {name!r} {refusal}.", code="invalid_echo_fields")
    if len(set(value)) != len(value):
        raise ValidationError("echo_fields names a field twice.", code="invalid_echo_fields")
    return list(value)


# Time and order (docs/contract.md, section 14).

PRIORITY_MIN, PRIORITY_MAX, PRIORITY_DEFAULT = 1, 9, 5
AFTER_MAX = 20
REQUIREMENTS = ("completed", "no_failures", "terminal")
# About 100 years: beyond any real deadline, and now + it is still a date.
COMPLETE_WITHIN_MAX = 100 * 365 * 86400


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def timestamp_clean(value, *, field: str, code: str) -> datetime | None:
    """A timestamp field as stored: None for null; Unix seconds within 0..TS_MAX otherwise."""
    if value is None:
        return None
    if not ts_in_range(value) or not math.isfinite(value):
        raise ValidationError(f"{field} must be Unix seconds as a number from 0 to {TS_MAX}.", code=code)
    return from_ts(float(value))


def complete_within_clean(value) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not 0 < value <= COMPLETE_WITHIN_MAX:
        raise ValidationError(
            f"complete_within must be seconds as a number above 0 and at most {COMPLETE_WITHIN_MAX}.",
            code="invalid_deadline",
        )
    return float(value)


def priority_clean(value) -> int:
    """An integer 1..9; 5.0 is 5, as JSON Schema counts it an integer too."""
    if not _is_number(value) or value != int(value) or not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise ValidationError(
            f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}.", code="invalid_priority"
        )
    return int(value)


def after_clean(value) -> list[dict]:
    """The `after` requirements as stored: [] for none, else [{"batch": canonical uuid, "require"}].
    "require" may be left out for "completed"."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError("after must be a list of {batch, require} objects.", code="invalid_after")
    if len(value) > AFTER_MAX:
        raise ValidationError(
            f"after names {len(value)} batches; at most {AFTER_MAX} are allowed.", code="invalid_after"
        )
    cleaned = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or "batch" not in item or set(item) - {"batch", "require"}:
            raise ValidationError(
                f"after[{index}] must be an object with batch and, optionally, require.", code="invalid_after"
            )
        try:
            parent = str(uuid.UUID(item["batch"])) if isinstance(item["batch"], str) else None
        except ValueError:
            parent = None
        if parent is None:
            raise ValidationError(f"after[{index}].batch must be a batch uuid.", code="invalid_after")
        require = item.get("require", "completed")
        if not isinstance(require, str) or require not in REQUIREMENTS:
            raise ValidationError(
                f"after[{index}].require must be one of {', '.join(REQUIREMENTS)}.", code="invalid_after"
            )
        cleaned.append({"batch": parent, "require": require})
    if len({item["batch"] for item in cleaned}) != len(cleaned):
        raise ValidationError("after names a batch twice.", code="invalid_after")
    return cleaned

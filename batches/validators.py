"""The checks of create_batch's own fields (docs/contract.md, section 3), shared by the service and the
serializers; a leaf module, so the schema's serializers need nothing of the pipeline."""

import json

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

from batchsite import jsonsafe

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

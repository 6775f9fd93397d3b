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

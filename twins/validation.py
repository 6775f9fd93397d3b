"""What a valid operation input is, written once as plain Python.

Each operation's input is a tuple of `InputField`s. `twins.serializers` builds the DRF
serializer (the contract, used by the REST views and the schema) from them, and
`validate_fast` checks a line the same way without DRF's per-field machinery: the batch
executor validates millions of lines, where DRF per row is about 60 times slower. A property
test holds the two to the same verdicts, errors included.

The parsers raise Django's `ValidationError` with a message that names the offending key.
"""

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from rest_framework.exceptions import ErrorDetail
from rest_framework.exceptions import ValidationError as InputError

from batchsite import jsonsafe
from batchsite.timestamps import from_ts, ts_in_range

DESCRIPTION_KEY = re.compile(r"[a-z_][0-9a-z_]{0,63}")
ENTRY_KEY = re.compile(r"[a-z_][0-9a-z_]{0,127}")
IDENTITY = re.compile(r"[A-Za-z_][0-9A-Za-z_]{0,7}#[0-9A-Za-z_=+-]{1,128}")
DESCRIPTION_MAX_BYTES = 64 * 1024
ENTRY_VALUE_MAX_BYTES = 16 * 1024
RULE_MAX_LENGTH = 4096
SCAN_COUNT_MAX = 1000
PERSONAL_LEDGER = "personal"


SHOWN_MAX_CHARS = 200


def shown(value: Any) -> str:
    """A client's value as an error message quotes it: its repr, cut short; never an error
    of its own (a 5,000-digit integer or a 5,000-deep list cannot be repr'd)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"
    return text if len(text) <= SHOWN_MAX_CHARS else text[:SHOWN_MAX_CHARS] + "…"


def encoded_size(value: Any) -> int:
    """The value's size as compact UTF-8 JSON; a ValidationError (the parser's 400
    `malformed_body`) for a value no JSON body could carry: too deep, NaN or Infinity, an
    integer too long, a lone surrogate."""
    try:
        return len(jsonsafe.parsed_encoded(value))
    except jsonsafe.JsonRefused as error:
        raise ValidationError(error.description, code=error.subcode) from None


def _require_mapping(value: Any, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{what} must be an object.", code="invalid")
    return value


def _require_keys_match(mapping: Mapping, pattern: re.Pattern, what: str) -> None:
    for key in mapping:
        if not isinstance(key, str) or not pattern.fullmatch(key):
            raise ValidationError(
                f"{what} {shown(key)} does not match ^{pattern.pattern}$.", code="invalid_key"
            )


def parse_uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise ValidationError("Must be a UUID string.", code="invalid")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationError(f"{shown(value)} is not a valid UUID.", code="invalid") from None


def cursor_of(last: uuid.UUID) -> str:
    """Where scan_twins resumes: after this twin (base64 of its uuid, as Trusted Twin's cursors)."""
    return base64.b64encode(str(last).encode()).decode()


def parse_cursor(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(base64.b64decode(value, validate=True).decode())
    except (TypeError, ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("Not a cursor given by scan_twins.", code="invalid") from None


def parse_ledger(value: Any) -> str:
    """`personal` or an account's uuid; which account it must be is the service's concern."""
    if value == PERSONAL_LEDGER:
        return PERSONAL_LEDGER
    return str(parse_uuid(value))


def parse_bool(value: Any) -> bool:
    # Query strings carry booleans as text; requests sends Python's True as "True".
    if value is True or value in ("true", "True", "1"):
        return True
    if value is False or value in ("false", "False", "0"):
        return False
    raise ValidationError("Must be a boolean.", code="invalid")


def parse_count(value: Any) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= SCAN_COUNT_MAX:
        raise ValidationError(f"Must be an integer from 1 to {SCAN_COUNT_MAX}.", code="invalid")
    return value


def parse_text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > RULE_MAX_LENGTH:
        raise ValidationError(f"Must be a string of at most {RULE_MAX_LENGTH} characters.", code="invalid")
    refusal = jsonsafe.refusal_of_value(value)
    if refusal:
        raise ValidationError(refusal, code=jsonsafe.MALFORMED)
    return value


def parse_timestamp(value: Any) -> datetime:
    if not ts_in_range(value):
        raise ValidationError("Must be Unix seconds as a number.", code="invalid")
    try:
        return from_ts(float(value))
    except (OverflowError, OSError, ValueError):
        raise ValidationError("Must be Unix seconds as a number.", code="invalid") from None


def parse_description(value: Any) -> dict:
    """Keys as Trusted Twin's, values any JSON (null removes the key in an update)."""
    description = _require_mapping(value, "description")
    _require_keys_match(description, DESCRIPTION_KEY, "Description key")
    if encoded_size(description) > DESCRIPTION_MAX_BYTES:
        raise ValidationError(
            f"The description exceeds {DESCRIPTION_MAX_BYTES} bytes.", code="quota_violation"
        )
    return dict(description)


def parse_identity(value: Any) -> str:
    if not isinstance(value, str) or not IDENTITY.fullmatch(value):
        raise ValidationError(f"Identity {shown(value)} does not match ^{IDENTITY.pattern}$.", code="invalid")
    return value


def _parse_nullable(parse: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else parse(value)


def _reject_unknown(fields: Mapping, known: set[str], what: str) -> None:
    unknown = sorted(set(fields) - known, key=shown)
    if unknown:
        raise ValidationError(f"{what}: unsupported field {shown(unknown[0])}.", code="invalid")


def parse_identities(value: Any) -> dict[str, dict]:
    """{identity: {validity_ts?, visibility?}} → {identity: {validity_at, visibility}}."""
    identities = _require_mapping(value, "identities")
    if not identities:
        raise ValidationError("Give at least one identity.", code="invalid")
    parsed = {}
    for identity, options in identities.items():
        parse_identity(identity)
        options = _require_mapping(options, f"Identity {identity!r}")
        _reject_unknown(options, {"validity_ts", "visibility"}, f"Identity {identity!r}")
        parsed[identity] = {
            "validity_at": _parse_nullable(parse_timestamp, options.get("validity_ts")),
            "visibility": _parse_nullable(parse_text, options.get("visibility")),
        }
    return parsed


def _parse_entry_value(key: str, value: Any) -> Any:
    if encoded_size(value) > ENTRY_VALUE_MAX_BYTES:
        raise ValidationError(
            f"Entry {key!r}: the value exceeds {ENTRY_VALUE_MAX_BYTES} bytes.", code="quota_violation"
        )
    return value


def _parse_entries(value: Any, *, value_required: bool) -> dict[str, dict]:
    entries = _require_mapping(value, "entries")
    if not entries:
        raise ValidationError("Give at least one entry.", code="invalid")
    _require_keys_match(entries, ENTRY_KEY, "Entry key")
    parsed = {}
    for key, fields in entries.items():
        fields = _require_mapping(fields, f"Entry {key!r}")
        _reject_unknown(fields, {"value", "visibility"}, f"Entry {key!r}")
        if value_required and "value" not in fields:
            raise ValidationError(f"Entry {key!r}: a value is required.", code="invalid")
        if not fields:
            raise ValidationError(f"Entry {key!r}: give a value or a visibility.", code="invalid")
        entry = {}
        if "value" in fields:
            entry["value"] = _parse_entry_value(key, fields["value"])
        if "visibility" in fields or value_required:
            entry["visibility"] = _parse_nullable(parse_text, fields.get("visibility"))
        parsed[key] = entry
    return parsed


def parse_new_entries(value: Any) -> dict[str, dict]:
    """{key: {value, visibility?}} for add_twin_ledger_entry."""
    return _parse_entries(value, value_required=True)


def parse_entry_changes(value: Any) -> dict[str, dict]:
    """{key: {value?, visibility?}} for update_twin_ledger_entry: only what is given changes."""
    return _parse_entries(value, value_required=False)


def parse_entry_keys(value: Any) -> list[str]:
    """Entry keys: a list in a batch line, comma-separated in a query string."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not value:
        raise ValidationError("Give entry keys as a list or comma-separated.", code="invalid")
    for key in value:
        if not isinstance(key, str) or not ENTRY_KEY.fullmatch(key):
            raise ValidationError(
                f"Entry key {shown(key)} does not match ^{ENTRY_KEY.pattern}$.", code="invalid_key"
            )
    return list(dict.fromkeys(value))


_MISSING = object()


@dataclass(frozen=True)
class InputField:
    name: str
    parse: Callable[[Any], Any]
    # The OpenAPI schema of the field, for the generated serializer.
    schema: dict
    required: bool = True
    default: Any = _MISSING
    allow_null: bool = False
    help_text: str = ""

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING


def _error(message: str, code: str) -> list[ErrorDetail]:
    return [ErrorDetail(message, code=code)]


def _not_a_mapping(data: Any) -> InputError:
    """What the serializer raises for data that is not a mapping (None included)."""
    if data is None:
        return InputError({"non_field_errors": _error("No data provided", "null")})
    message = f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
    return InputError({"non_field_errors": _error(message, "invalid")})


def validate_fast(fields: tuple[InputField, ...], data: Any) -> dict:
    """The generated serializer's `validated_data`, or the same `ValidationError` it raises."""
    if not isinstance(data, Mapping):
        raise _not_a_mapping(data)
    validated, errors = {}, {}
    for field in fields:
        value = data.get(field.name, _MISSING)
        if value is _MISSING:
            if field.required:
                errors[field.name] = _error("This field is required.", "required")
            elif field.has_default:
                validated[field.name] = field.default
        elif value is None:
            if field.allow_null:
                validated[field.name] = None
            else:
                errors[field.name] = _error("This field may not be null.", "null")
        else:
            try:
                validated[field.name] = field.parse(value)
            except ValidationError as error:
                errors[field.name] = [ErrorDetail(message, code=error.code) for message in error.messages]
    if errors:
        raise InputError(errors)
    return validated

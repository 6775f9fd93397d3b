"""Timestamps on the wire are Unix seconds as numbers with three decimals."""

from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# The last second of year 9999: past it a timestamp is no date at all. Before 1970 is refused
# too, so that what the schema states (0..TS_MAX) is exactly what is accepted.
TS_MAX = 253402300799
TS_SCHEMA = {"type": "number", "minimum": 0, "maximum": TS_MAX}


def ts_in_range(value) -> bool:
    """A JSON number of Unix seconds that names a date (no bool, NaN or infinity)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= TS_MAX


def to_ts(moment: datetime | None) -> float | None:
    return None if moment is None else round(moment.timestamp(), 3)


def from_ts(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


@extend_schema_field(TS_SCHEMA)
class TimestampField(serializers.Field):
    """A datetime read and written as Unix seconds (`1764325200.123`)."""

    default_error_messages = {"invalid": "Must be Unix seconds as a number."}

    def to_representation(self, value):
        return to_ts(value)

    def to_internal_value(self, data):
        if not ts_in_range(data):
            self.fail("invalid")
        try:
            return from_ts(float(data))
        except (OverflowError, OSError, ValueError):
            self.fail("invalid")

"""Timestamps on the wire are Unix seconds as numbers with three decimals."""

from datetime import UTC, datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


def to_ts(moment: datetime | None) -> float | None:
    return None if moment is None else round(moment.timestamp(), 3)


def from_ts(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


@extend_schema_field(OpenApiTypes.NUMBER)
class TimestampField(serializers.Field):
    """A datetime read and written as Unix seconds (`1764325200.123`)."""

    default_error_messages = {"invalid": "Must be Unix seconds as a number."}

    def to_representation(self, value):
        return to_ts(value)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        try:
            return from_ts(float(data))
        except (OverflowError, OSError, ValueError):
            self.fail("invalid")

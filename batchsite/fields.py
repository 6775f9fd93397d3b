"""Serializer fields that accept what the OpenAPI schema says and nothing else.

DRF's CharField turns a number into its text (`5` → `"5"`), so a body the schema rejects
(`"name": 5`) would be accepted; these fields refuse any JSON value that is not a string.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# A listing cursor: URL-safe base64 of the last row's position (the listings' selectors).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{16,}={0,2}$"


class StrictStringMixin:
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(StrictStringMixin, serializers.CharField):
    pass


class StrictRegexField(StrictStringMixin, serializers.RegexField):
    default_error_messages = {"invalid": "This value does not match the required pattern."}


@extend_schema_field({"type": "string", "pattern": CURSOR_PATTERN})
class CursorField(serializers.CharField):
    """Checked by the listing itself, which answers invalid_cursor for one it did not issue."""


class ListQuerySerializer(serializers.Serializer):
    """A listing's query parameters. DRF skips an empty value (`?cursor=`) of an optional field;
    the schema allows none, so it is refused like any other value that is not one."""

    def to_internal_value(self, data):
        blank = {name: "May not be blank." for name in self.fields if data.get(name) == ""}
        if blank:
            raise serializers.ValidationError(blank)
        return super().to_internal_value(data)

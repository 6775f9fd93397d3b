"""Serializer fields that accept what the OpenAPI schema says and nothing else.

DRF's CharField turns a number into its text (`5` → `"5"`), so a body the schema rejects
(`"name": 5`) would be accepted; these fields refuse any JSON value that is not a string.
"""

from rest_framework import serializers


class StrictStringMixin:
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(StrictStringMixin, serializers.CharField):
    pass


class StrictRegexField(StrictStringMixin, serializers.RegexField):
    default_error_messages = {"invalid": "This value does not match the required pattern."}

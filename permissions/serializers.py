from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from batchsite.fields import StrictCharField, StrictRegexField
from batchsite.timestamps import TimestampField

ACTION_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# Trusted Twin's pattern for role and user names.
NAME_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_ \-]{0,30}[0-9A-Za-z]$"


class OmitNullDescriptionMixin:
    """Trusted Twin leaves `description` out of an object that has none."""

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data.get("description") is None:
            data.pop("description", None)
        return data


class StatementSerializer(serializers.Serializer):
    effect = serializers.ChoiceField(choices=["allow", "deny"])
    actions = serializers.ListField(
        child=StrictRegexField(ACTION_NAME_PATTERN),
        allow_null=True,
        required=False,
        default=None,
    )


class RulesSerializer(serializers.Serializer):
    """Trusted Twin answers with all three rules, null for any the client left out."""

    twin_rule = StrictCharField(allow_null=True, required=False, default=None, min_length=1, max_length=4096)
    entry_rule = StrictCharField(allow_null=True, required=False, default=None, min_length=1, max_length=4096)
    identity_rule = StrictCharField(
        allow_null=True, required=False, default=None, min_length=1, max_length=4096
    )


class RoleCreateSerializer(serializers.Serializer):
    name = StrictRegexField(NAME_PATTERN, required=False, default="User Role Name")
    statement = StatementSerializer(required=False, allow_null=True, default=None)
    rules = RulesSerializer(required=False, allow_null=True, default=None)


class RoleUpdateSerializer(serializers.Serializer):
    name = StrictRegexField(NAME_PATTERN, required=False)
    statement = StatementSerializer(required=False, allow_null=True)
    rules = RulesSerializer(required=False, allow_null=True)


class RoleRulesSerializer(serializers.Serializer):
    twin_rule = serializers.CharField(allow_null=True)
    entry_rule = serializers.CharField(allow_null=True)
    identity_rule = serializers.CharField(allow_null=True)


RULE_NAMES = ("twin_rule", "entry_rule", "identity_rule")


class RoleSerializer(serializers.Serializer):
    uuid = serializers.UUIDField()
    name = serializers.CharField()
    account = serializers.UUIDField(source="account_id")
    statement = serializers.JSONField()
    rules = serializers.SerializerMethodField()
    created_ts = TimestampField(source="created_at")
    updated_ts = TimestampField(source="updated_at")

    @extend_schema_field(RoleRulesSerializer)
    def get_rules(self, role) -> dict:
        """All three rules, null where none was given, also for a role stored without rules."""
        stored = role.rules or {}
        return {name: stored.get(name) for name in RULE_NAMES}


class RoleSummarySerializer(serializers.Serializer):
    name = serializers.CharField()
    created_ts = TimestampField(source="created_at")
    updated_ts = TimestampField(source="updated_at")


class UserCreateSerializer(serializers.Serializer):
    name = StrictRegexField(NAME_PATTERN, required=False, default="User Name")
    role = serializers.UUIDField()
    description = serializers.DictField(required=False, allow_null=True, default=None)
    activity = serializers.DictField(required=False, allow_null=True, default=None)


class UserUpdateSerializer(serializers.Serializer):
    name = StrictRegexField(NAME_PATTERN, required=False)
    role = serializers.UUIDField(required=False)
    description = serializers.DictField(required=False, allow_null=True)
    activity = serializers.DictField(required=False, allow_null=True)


class UserSerializer(OmitNullDescriptionMixin, serializers.Serializer):
    uuid = serializers.UUIDField()
    role = serializers.UUIDField(source="role_id")
    account = serializers.UUIDField(source="account_id")
    name = serializers.CharField()
    description = serializers.JSONField(required=False, help_text="Left out when the user has none.")
    activity = serializers.JSONField()
    created_ts = TimestampField(source="created_at")
    updated_ts = TimestampField(source="updated_at")


class UserSummarySerializer(serializers.Serializer):
    name = serializers.CharField()
    role = serializers.UUIDField(source="role_id")
    created_ts = TimestampField(source="created_at")
    updated_ts = TimestampField(source="updated_at")


class SecretValiditySerializer(serializers.Serializer):
    validity_ts = TimestampField(required=False, allow_null=True, default=None)


class SecretSerializer(serializers.Serializer):
    account = serializers.UUIDField(source="account_user.account_id")
    user = serializers.UUIDField(source="account_user_id")
    validity_ts = TimestampField(source="validity_at")
    created_ts = TimestampField(source="created_at")
    updated_ts = TimestampField(source="updated_at")
    fingerprint = serializers.CharField()


class IssuedSecretSerializer(serializers.Serializer):
    account = serializers.UUIDField(source="secret.account_user.account_id")
    user = serializers.UUIDField(source="secret.account_user_id")
    secret = serializers.CharField(source="raw")
    validity_ts = TimestampField(source="secret.validity_at")
    created_ts = TimestampField(source="secret.created_at")
    updated_ts = TimestampField(source="secret.updated_at")


class PinSerializer(serializers.Serializer):
    pin = serializers.CharField()


class WhoAmISerializer(serializers.Serializer):
    account = serializers.UUIDField(source="account_id")
    user = serializers.UUIDField(source="uuid")
    role = serializers.UUIDField(source="role_id")

from django.core.validators import RegexValidator
from django.utils import timezone
from rest_framework import serializers

from batchsite.fields import CursorField, ListQuerySerializer
from batchsite.timestamps import TimestampField
from notifications.services import EXPIRES_MAX_SECONDS

TOPIC_PATTERN = r"^[a-z_][0-9a-z_]{0,63}$"
LIST_LIMIT_MAX = 100


class SubscribeSerializer(serializers.Serializer):
    callback_url = serializers.CharField(
        min_length=1,
        max_length=2000,
        help_text="http(s) URL the service POSTs the confirmation and the events to.",
    )
    topic = serializers.CharField(
        validators=[
            RegexValidator(
                TOPIC_PATTERN, message=f"The topic must match {TOPIC_PATTERN}.", code="invalid_topic"
            )
        ],
        help_text="`batches` receives the account's batch events.",
    )
    client_secret = serializers.CharField(
        max_length=256,
        validators=[
            # It travels as a header value: printable ASCII only.
            RegexValidator(
                r"^[\x20-\x7e]*$", message="Printable ASCII characters only.", code="invalid_client_secret"
            )
        ],
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="Sent back as X-Client-Secret with every message.",
    )
    expires = serializers.IntegerField(
        min_value=1,
        max_value=EXPIRES_MAX_SECONDS,
        required=False,
        allow_null=True,
        help_text="Seconds the subscription is valid (default 30 days); a refresh renews it.",
    )


class TokenQuerySerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200, help_text="From the confirmation URL.")


class SubscriptionSerializer(serializers.Serializer):
    topic = serializers.CharField()
    account = serializers.UUIDField(source="account_id")
    validity_ts = TimestampField(source="validity_at")


class SubscriptionLinksSerializer(SubscriptionSerializer):
    unsubscribe_url = serializers.CharField(help_text="DELETE it to unsubscribe.")
    refresh_url = serializers.CharField(help_text="PATCH it to renew the validity.")


class SubscriptionCreatedSerializer(serializers.Serializer):
    subscription = SubscriptionSerializer(source="*")
    callback_url = serializers.CharField()
    server_secret = serializers.CharField(help_text="Key of X-Webhook-Signature; shown only here.")


class SubscriptionRefreshedSerializer(serializers.Serializer):
    subscription = SubscriptionLinksSerializer()
    callback_url = serializers.CharField()


class SubscriptionListQuerySerializer(ListQuerySerializer):
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=LIST_LIMIT_MAX, default=LIST_LIMIT_MAX
    )
    cursor = CursorField(required=False, help_text="From the previous page; opaque (URL-safe base64).")


class ManagedSubscriptionSerializer(serializers.Serializer):
    """A subscription as the account's managers see it: the callback URL (its query may hold a
    key) is shown only to roles that may list and end subscriptions."""

    subscription = serializers.UUIDField(source="uuid")
    topic = serializers.CharField()
    callback_url = serializers.CharField()
    state = serializers.SerializerMethodField(help_text="pending, active, expired or unsubscribed")
    created_by = serializers.UUIDField(source="created_by_id", allow_null=True, help_text="The user.")
    created_ts = TimestampField(source="created_at")
    validity_ts = TimestampField(source="validity_at")

    def get_state(self, subscription) -> str:
        return subscription.state(timezone.now())


class SubscriptionPageSerializer(serializers.Serializer):
    subscriptions = ManagedSubscriptionSerializer(many=True)
    cursor = serializers.CharField(
        allow_null=True, help_text="Pass as ?cursor= for the next page; null at the end."
    )

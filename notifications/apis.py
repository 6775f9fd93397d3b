"""Trusted Twin's notification routes. Subscribing needs a secret and `webhook_subscribe`;
the token routes need only the token from the confirmation URL (it is the credential), so
the receiver of the confirmation can confirm it, and anyone holding it can end it. The
account's own routes list its subscriptions and end one without its token."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions as drf_permissions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from batchsite.inputs import validated
from batchsite.schema import error_responses as errors
from notifications import selectors, services
from notifications.serializers import (
    ManagedSubscriptionSerializer,
    SubscribeSerializer,
    SubscriptionCreatedSerializer,
    SubscriptionLinksSerializer,
    SubscriptionListQuerySerializer,
    SubscriptionPageSerializer,
    SubscriptionRefreshedSerializer,
    SubscriptionSerializer,
    TokenQuerySerializer,
)

TOKEN = OpenApiParameter(
    "token",
    {"type": "string", "minLength": 1, "maxLength": 200},
    required=True,
    description="The token of the confirmation URL.",
)


class WebhooksApi(APIView):
    required_actions = {"POST": "webhook_subscribe", "GET": "get_webhook_subscriptions"}

    @extend_schema(
        operation_id="get_webhook_subscriptions",
        parameters=[SubscriptionListQuerySerializer],
        responses={200: SubscriptionPageSerializer, **errors(400, 401, 403)},
        description="The account's subscriptions, ended ones included, newest first, with their "
        "callback URLs and states. Pass the returned cursor for the next page.",
    )
    def get(self, request):
        query = validated(SubscriptionListQuerySerializer, request.query_params)
        page = selectors.subscription_list(
            account=request.account, cursor=query.get("cursor"), limit=query["limit"]
        )
        body = {"subscriptions": page.subscriptions, "cursor": page.cursor}
        return Response(SubscriptionPageSerializer(body).data)

    @extend_schema(
        operation_id="webhook_subscribe",
        request=SubscribeSerializer,
        responses={201: SubscriptionCreatedSerializer, **errors(400, 401, 403, 409)},
        description="A subscription of the callback URL to a topic. The service POSTs a "
        "subscription_confirmation message to it; nothing else is sent until its confirmation_url "
        "is fetched. Hosts on loopback, private, link-local or multicast addresses are refused "
        "(callback_url_not_allowed); an account holding WEBHOOK_MAX_SUBSCRIPTIONS_PER_ACCOUNT live "
        "subscriptions is refused with 409 too_many_subscriptions.",
    )
    def post(self, request):
        data = validated(SubscribeSerializer, request.data)
        subscription = services.subscription_create(
            account=request.account,
            created_by=request.user.account_user,
            callback_url=data["callback_url"],
            topic=data["topic"],
            client_secret=data.get("client_secret") or "",
            expires=data.get("expires"),
            base_url=request.build_absolute_uri("/"),
        )
        return Response(SubscriptionCreatedSerializer(subscription).data, status=status.HTTP_201_CREATED)


class WebhookTokenApi(APIView):
    authentication_classes = []
    permission_classes = [drf_permissions.AllowAny]

    def subscription(self, request, account):
        token = validated(TokenQuerySerializer, request.query_params)["token"]
        subscription = selectors.subscription_by_token(account=account, token=token)
        services.subscription_live_check(subscription=subscription)
        return subscription, token

    def links(self, subscription, token):
        """The subscription with the URL that unsubscribes (DELETE) and refreshes (PATCH) it."""
        url = services.subscription_url(subscription, token)
        subscription.unsubscribe_url = subscription.refresh_url = url
        return subscription

    @extend_schema(
        operation_id="webhook_confirm_subscription",
        parameters=[TOKEN],
        responses={200: SubscriptionLinksSerializer, **errors(400, 404)},
        description="Confirms the subscription: events are delivered from now on.",
    )
    def get(self, request, account):
        subscription, token = self.subscription(request, account)
        subscription = services.subscription_confirm(subscription=subscription)
        return Response(SubscriptionLinksSerializer(self.links(subscription, token)).data)

    @extend_schema(
        operation_id="webhook_unsubscribe",
        parameters=[TOKEN],
        responses={201: SubscriptionSerializer, **errors(400, 404)},
        description="Ends the subscription: nothing more is delivered and the token stops working.",
    )
    def delete(self, request, account):
        subscription, _ = self.subscription(request, account)
        subscription = services.subscription_unsubscribe(subscription=subscription)
        return Response(SubscriptionSerializer(subscription).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="webhook_refresh_subscription",
        parameters=[TOKEN],
        request=None,
        responses={201: SubscriptionRefreshedSerializer, **errors(400, 404)},
        description="Renews the subscription: valid for its `expires` seconds from now.",
    )
    def patch(self, request, account):
        subscription, token = self.subscription(request, account)
        subscription = services.subscription_refresh(subscription=subscription)
        body = {"subscription": self.links(subscription, token), "callback_url": subscription.callback_url}
        return Response(SubscriptionRefreshedSerializer(body).data, status=status.HTTP_201_CREATED)


class WebhookSubscriptionApi(APIView):
    required_actions = {"DELETE": "delete_webhook_subscription"}

    @extend_schema(
        operation_id="delete_webhook_subscription",
        responses={200: ManagedSubscriptionSerializer, **errors(401, 403, 404)},
        description="Ends one of the account's subscriptions without its token: nothing more is "
        "delivered and its token stops working. Ending an ended one changes nothing.",
    )
    def delete(self, request, subscription):
        found = selectors.subscription_get(account=request.account, subscription_id=subscription)
        found = services.subscription_unsubscribe(subscription=found)
        return Response(ManagedSubscriptionSerializer(found).data)

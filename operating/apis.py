"""GET /usage and GET /usage/{user} (Trusted Twin's get_account_usage and get_user_usage), and
GET /metrics for Prometheus."""

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from batchsite.errors import error_body
from operating import metrics, selectors, services
from permissions.selectors import user_get


class AccountUsageApi(APIView):
    required_actions = {"GET": "get_account_usage"}

    @extend_schema(operation_id="get_account_usage", responses=dict)
    def get(self, request):
        # This process's calls not yet written would otherwise be missing for a few seconds.
        services.usage_flush(force=True)
        return Response({"usage": selectors.usage_hours(account_id=request.account.pk)})


class UserUsageApi(APIView):
    required_actions = {"GET": "get_user_usage"}

    @extend_schema(operation_id="get_user_usage", responses=dict)
    def get(self, request, user):
        account_user = user_get(account=request.account, user_uuid=user)
        services.usage_flush(force=True)
        return Response(
            {"usage": selectors.usage_hours(account_id=request.account.pk, user_id=account_user.uuid)}
        )


@require_safe
def metrics_view(request):
    """Prometheus text format, every process's samples together. With METRICS_TOKEN set, only
    for `Authorization: Bearer <token>`."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            body = error_body(
                status_code=401, subcode="invalid_metrics_token", description="Bearer METRICS_TOKEN needed."
            )
            response = JsonResponse(body, status=401)
            response["WWW-Authenticate"] = "Bearer"
            return response
    content, content_type = metrics.exposition()
    return HttpResponse(content, content_type=content_type)

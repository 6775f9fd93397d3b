"""GET /usage and GET /usage/{user} (Trusted Twin's get_account_usage and get_user_usage), and
GET /metrics for Prometheus."""

from django.http import HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from batchsite.errors import error_body
from batchsite.middleware import require_safe
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
    """Prometheus text format, every process's samples together; who may read it:
    metrics.scrape_refusal."""
    refusal = metrics.scrape_refusal(request.META)
    if refusal is not None:
        body = error_body(
            status_code=refusal.status_code, subcode=refusal.subcode, description=refusal.description
        )
        response = JsonResponse(body, status=refusal.status_code)
        if refusal.status_code == 401:
            response["WWW-Authenticate"] = "Bearer"
        return response
    content, content_type = metrics.exposition()
    return HttpResponse(content, content_type=content_type)

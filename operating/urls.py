from django.urls import path

from operating import apis

urlpatterns = [
    path("usage", apis.AccountUsageApi.as_view(), name="get_account_usage"),
    path("usage/<uuid:user>", apis.UserUsageApi.as_view(), name="get_user_usage"),
    path("metrics", apis.metrics_view, name="metrics"),
]

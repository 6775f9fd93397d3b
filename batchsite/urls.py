from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from batchsite.health import healthz
from operating.views import dashboard

handler404 = "batchsite.errors.json_not_found"
handler500 = "batchsite.errors.json_server_error"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/dashboard/", dashboard, name="operating_dashboard"),
    path("admin/", admin.site.urls),
    path("ui/", include("batches.page_urls")),
    path("", include("permissions.urls")),
    path("", include("twins.urls")),
    path("", include("batches.urls")),
    path("", include("notifications.urls")),
    path("", include("operating.urls")),
]

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from batchsite.health import healthz
from batchsite.home import home

handler404 = "batchsite.errors.json_not_found"
handler500 = "batchsite.errors.json_server_error"

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    # The Swagger UI page loads its init script as a file (?script), so the CSP needs no inline code.
    path(
        "docs",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="docs/swagger_ui.html"),
        name="docs",
    ),
    path("admin/dashboard/", include("operating.page_urls")),
    path("admin/", admin.site.urls),
    path("ui/", include("batches.page_urls")),
    path("", include("permissions.urls")),
    path("", include("twins.urls")),
    path("", include("batches.urls")),
    path("", include("notifications.urls")),
    path("", include("operating.urls")),
]

"""The staff dashboard, included under /admin/dashboard/ (before the admin's own routes)."""

from django.urls import path

from operating.views import dashboard

urlpatterns = [
    path("", dashboard, name="operating_dashboard"),
]

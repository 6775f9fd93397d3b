from django.urls import path

from twins import apis
from twins.registry import OPERATIONS

urlpatterns = [path(route, view.as_view()) for route, view in apis.route_views(OPERATIONS.values()).items()]

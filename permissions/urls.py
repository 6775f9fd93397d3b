from django.urls import path

from permissions import apis

urlpatterns = [
    path("whoami", apis.WhoAmIApi.as_view(), name="who_am_i"),
    path("roles", apis.RolesApi.as_view(), name="roles"),
    path("roles/<uuid:role>", apis.RoleApi.as_view(), name="role"),
    path("users", apis.UsersApi.as_view(), name="users"),
    path("users/<uuid:user>", apis.UserApi.as_view(), name="user"),
    path("users/<uuid:user>/secrets", apis.UserSecretApi.as_view(), name="user_secret"),
    path("secrets/<uuid:account>/<str:pin>", apis.SecretFromPinApi.as_view(), name="create_user_secret"),
]

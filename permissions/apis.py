"""Tenant administration with Trusted Twin's routes, shapes and status codes.

Status codes follow the examples in Trusted Twin's own client: creates answer 201, and so do
`update_user_role` and `update_user_secret` (their documented examples say 201, so a client
written against them expects it); every other read, update and delete answers 200.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from batchsite.inputs import validated
from permissions import selectors, services
from permissions.access import Public
from permissions.serializers import (
    IssuedSecretSerializer,
    PinSerializer,
    RoleCreateSerializer,
    RoleSerializer,
    RoleSummarySerializer,
    RoleUpdateSerializer,
    SecretSerializer,
    SecretValiditySerializer,
    UserCreateSerializer,
    UserSerializer,
    UserSummarySerializer,
    UserUpdateSerializer,
    WhoAmISerializer,
)
from permissions.throttles import PinExchangeThrottle


class WhoAmIApi(APIView):
    required_actions = {"GET": "who_am_i"}

    @extend_schema(responses=WhoAmISerializer, operation_id="who_am_i")
    def get(self, request):
        return Response(WhoAmISerializer(request.user.account_user).data)


class RolesApi(APIView):
    required_actions = {"GET": "get_user_roles", "POST": "create_user_role"}

    @extend_schema(operation_id="get_user_roles", responses=dict)
    def get(self, request):
        roles = selectors.role_list(account=request.account)
        return Response({"roles": {str(role.uuid): RoleSummarySerializer(role).data for role in roles}})

    @extend_schema(
        operation_id="create_user_role", request=RoleCreateSerializer, responses={201: RoleSerializer}
    )
    def post(self, request):
        data = validated(RoleCreateSerializer, request.data)
        role = services.role_create(account=request.account, acting_user=request.user, **data)
        return Response(RoleSerializer(role).data, status=status.HTTP_201_CREATED)


class RoleApi(APIView):
    required_actions = {"GET": "get_user_role", "PATCH": "update_user_role", "DELETE": "delete_user_role"}

    @extend_schema(operation_id="get_user_role", responses=RoleSerializer)
    def get(self, request, role):
        return Response(RoleSerializer(selectors.role_get(account=request.account, role_uuid=role)).data)

    @extend_schema(
        operation_id="update_user_role", request=RoleUpdateSerializer, responses={201: RoleSerializer}
    )
    def patch(self, request, role):
        found = selectors.role_get(account=request.account, role_uuid=role)
        data = validated(RoleUpdateSerializer, request.data)
        updated = services.role_update(role=found, acting_user=request.user, **data)
        return Response(RoleSerializer(updated).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="delete_user_role", responses={200: RoleSerializer})
    def delete(self, request, role):
        found = selectors.role_get(account=request.account, role_uuid=role)
        body = RoleSerializer(found).data
        services.role_delete(role=found, acting_user=request.user)
        return Response(body)


class UsersApi(APIView):
    required_actions = {"GET": "get_users", "POST": "create_user"}

    @extend_schema(operation_id="get_users", responses=dict)
    def get(self, request):
        users = selectors.user_list(account=request.account)
        return Response({"users": {str(user.uuid): UserSummarySerializer(user).data for user in users}})

    @extend_schema(operation_id="create_user", request=UserCreateSerializer, responses={201: UserSerializer})
    def post(self, request):
        data = validated(UserCreateSerializer, request.data)
        data["role"] = selectors.role_get(account=request.account, role_uuid=data["role"])
        account_user = services.user_create(account=request.account, acting_user=request.user, **data)
        return Response(UserSerializer(account_user).data, status=status.HTTP_201_CREATED)


class UserApi(APIView):
    required_actions = {"GET": "get_user", "PATCH": "update_user", "DELETE": "delete_user"}

    @extend_schema(operation_id="get_user", responses=UserSerializer)
    def get(self, request, user):
        return Response(UserSerializer(selectors.user_get(account=request.account, user_uuid=user)).data)

    @extend_schema(operation_id="update_user", request=UserUpdateSerializer, responses=UserSerializer)
    def patch(self, request, user):
        found = selectors.user_get(account=request.account, user_uuid=user)
        data = validated(UserUpdateSerializer, request.data)
        if "role" in data:
            data["role"] = selectors.role_get(account=request.account, role_uuid=data["role"])
        updated = services.user_update(account_user=found, acting_user=request.user, **data)
        return Response(UserSerializer(updated).data)

    @extend_schema(operation_id="delete_user", responses={200: UserSerializer})
    def delete(self, request, user):
        found = selectors.user_get(account=request.account, user_uuid=user)
        body = UserSerializer(found).data
        services.user_delete(account_user=found, acting_user=request.user)
        return Response(body)


class UserSecretApi(APIView):
    required_actions = {
        "POST": "create_user_secret_pin",
        "GET": "get_user_secret",
        "PATCH": "update_user_secret",
        "DELETE": "delete_user_secret",
    }

    @extend_schema(
        operation_id="create_user_secret_pin",
        request=SecretValiditySerializer,
        responses={201: PinSerializer},
    )
    def post(self, request, user):
        found = selectors.user_get(account=request.account, user_uuid=user)
        data = validated(SecretValiditySerializer, request.data)
        pin = services.secret_pin_create(
            account_user=found, secret_validity_at=data["validity_ts"], acting_user=request.user
        )
        return Response({"pin": pin}, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="get_user_secret", responses=SecretSerializer)
    def get(self, request, user):
        found = selectors.user_get(account=request.account, user_uuid=user)
        services.ensure_user_within(acting_user=request.user, account_user=found)
        return Response(SecretSerializer(selectors.secret_get(account_user=found)).data)

    @extend_schema(
        operation_id="update_user_secret", request=SecretValiditySerializer, responses={201: SecretSerializer}
    )
    def patch(self, request, user):
        found = selectors.user_get(account=request.account, user_uuid=user)
        secret = selectors.secret_get(account_user=found)
        data = validated(SecretValiditySerializer, request.data)
        updated = services.secret_update(
            secret=secret, validity_at=data["validity_ts"], acting_user=request.user
        )
        return Response(SecretSerializer(updated).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="delete_user_secret", responses={200: SecretSerializer})
    def delete(self, request, user):
        found = selectors.user_get(account=request.account, user_uuid=user)
        secret = selectors.secret_get(account_user=found)
        body = SecretSerializer(secret).data
        services.secret_delete(secret=secret, acting_user=request.user)
        return Response(body)


class SecretFromPinApi(APIView):
    """The PIN is the credential: no secret is needed (nor read) here."""

    authentication_classes = []
    permission_classes = [Public]
    throttle_classes = [PinExchangeThrottle]

    @extend_schema(operation_id="create_user_secret", request=None, responses={201: IssuedSecretSerializer})
    def post(self, request, account, pin):
        issued = services.secret_create_from_pin(account_uuid=account, pin=pin)
        return Response(IssuedSecretSerializer(issued).data, status=status.HTTP_201_CREATED)

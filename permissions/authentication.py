from django.utils import timezone
from rest_framework import authentication, exceptions

from permissions.models import UserSecret
from permissions.services import digest_of


class SecretAuthentication(authentication.BaseAuthentication):
    """The API secret, sent raw in `Authorization` (Trusted Twin's way) or as `Bearer <secret>`."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "").strip()
        if not header:
            return None
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "bearer":
            header = rest.strip()
        elif rest:
            # Another scheme (Basic, Token …) is not ours to judge.
            return None
        secret = (
            UserSecret.objects.select_related("account_user__user", "account_user__account")
            .filter(digest=digest_of(header))
            .first()
        )
        if secret is None:
            raise exceptions.AuthenticationFailed("The secret is not valid.")
        if secret.validity_at is not None and secret.validity_at <= timezone.now():
            raise exceptions.AuthenticationFailed("The secret has expired.")
        user = secret.account_user.user
        if not user.is_active:
            raise exceptions.AuthenticationFailed("The user is disabled.")
        return user, secret

    def authenticate_header(self, request):
        return "Bearer"

"""The action check every API view goes through: guardian's `has_perm(action, account)`."""

from rest_framework import exceptions, permissions

from permissions.selectors import account_of


class HasAction(permissions.BasePermission):
    """Deny by default. A view names the action of each HTTP method in `required_actions`;
    the caller needs that action as an object permission on their account."""

    def has_permission(self, request, view):
        user = request.user
        if user is None or not user.is_authenticated:
            return False
        account = account_of(user)
        if account is None:
            raise exceptions.PermissionDenied("This user belongs to no account.")
        action = getattr(view, "required_actions", {}).get(request.method)
        if action is None:
            return False
        if not user.has_perm(action, account):
            raise exceptions.PermissionDenied(f"The role does not allow {action}.")
        request.account = account
        return True

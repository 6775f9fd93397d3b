"""The checks every API view goes through: the method first (405 for one the route does not
serve), then guardian's `has_perm(action, account)`."""

from rest_framework import exceptions, permissions

from permissions.selectors import account_of, may


def ensure_method_served(request, view) -> None:
    """A route answers 405 for a method it does not serve, before any other check, so PUT,
    TRACE, OPTIONS or HEAD never look like a refusal of the caller. An action route serves the
    methods named in `required_actions`; a public one the methods it has a handler for (HEAD
    with GET, as Django maps it), never OPTIONS."""
    method = request.method
    actions = getattr(view, "required_actions", None)
    if actions is not None:
        served = method in actions
    else:
        name = method.lower()
        served = name != "options" and name in view.http_method_names and hasattr(view, name)
    if not served:
        raise exceptions.MethodNotAllowed(method)


class HasAction(permissions.BasePermission):
    """Deny by default. A view names the action of each HTTP method in `required_actions`;
    the caller needs that action as an object permission on their account."""

    def has_permission(self, request, view):
        ensure_method_served(request, view)
        user = request.user
        if user is None or not user.is_authenticated:
            return False
        account = account_of(user)
        if account is None:
            raise exceptions.PermissionDenied("This user belongs to no account.")
        action = getattr(view, "required_actions", {}).get(request.method)
        if action is None:
            return False
        if not may(user, action, account):
            raise exceptions.PermissionDenied(f"The role does not allow {action}.")
        request.account = account
        return True


class Public(permissions.BasePermission):
    """No secret needed (the URL or the PIN is the credential); unserved methods are 405."""

    def has_permission(self, request, view):
        ensure_method_served(request, view)
        return True

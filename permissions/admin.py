"""Staff admin for tenants. Every write goes through permissions.services, so a role's
statement is always materialised as guardian permissions and the escalation rule holds for
staff as it does for API users (a superuser holds every action, so is never refused)."""

from collections import defaultdict

from django import forms
from django.contrib import admin, messages
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from guardian.models import GroupObjectPermission, UserObjectPermission

from batchsite.admin import UuidSearch, adopt, refusal
from batchsite.errors import ApplicationError
from permissions import services
from permissions.actions import ACTIONS
from permissions.models import Account, AccountUser, Role, UserSecret
from permissions.signin import AdminSignInForm
from permissions.statements import EVERYTHING

# Wrong passwords lock sign-in out for a while, as on /ui/login (permissions.signin).
admin.site.login_form = AdminSignInForm


# Accounts


def account_permissions(account: Account) -> dict[str, list[str]]:
    """Who holds which action on the account, as guardian stores it: role name → actions."""
    content_type = ContentType.objects.get_for_model(Account)
    held = defaultdict(list)
    for granted in (
        GroupObjectPermission.objects.filter(content_type=content_type, object_pk=str(account.pk))
        .select_related("permission", "group__role")
        .order_by("group__role__name", "permission__codename")
    ):
        role = getattr(granted.group, "role", None)
        held[f"role {role.name}" if role else f"group {granted.group.name}"].append(
            granted.permission.codename
        )
    for granted in (
        UserObjectPermission.objects.filter(content_type=content_type, object_pk=str(account.pk))
        .select_related("permission", "user")
        .order_by("user__username", "permission__codename")
    ):
        held[f"user {granted.user.get_username()}"].append(granted.permission.codename)
    return dict(held)


@admin.register(Account)
class AccountAdmin(UuidSearch, admin.ModelAdmin):
    list_display = ["name", "uuid", "created_at"]
    search_fields = ["name"]
    uuid_search_fields = ("uuid",)
    show_full_result_count = False

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name"]
        return ["name", "uuid", "created_at", "updated_at", "object_permissions"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request, obj=None):
        # No account_update service yet: an account's page is for reading.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="object permissions (django-guardian)")
    def object_permissions(self, account):
        held = account_permissions(account)
        if not held:
            return "none"
        rows = format_html_join(
            "",
            "<tr><th scope='row'>{}</th><td>{}</td><td>{}</td></tr>",
            ((holder, len(actions), ", ".join(actions)) for holder, actions in held.items()),
        )
        return format_html(
            "<table><thead><tr><th>holder</th><th>actions</th><th>names</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def save_model(self, request, obj, form, change):
        adopt(obj, services.account_create(name=form.cleaned_data["name"]))


# Roles


class RoleForm(forms.ModelForm):
    """The statement as a checklist of actions with an effect; saved by the role services."""

    effect = forms.ChoiceField(
        choices=[
            ("allow", "allow: only the checked actions"),
            ("deny", "deny: every action except the checked ones"),
        ],
        widget=forms.RadioSelect,
    )
    actions = forms.MultipleChoiceField(
        choices=[(action, action) for action in ACTIONS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    acting_user = None

    class Meta:
        model = Role
        fields = ["account", "name", "rules"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        statement = (self.instance.statement if self.instance.pk else None) or EVERYTHING
        listed = statement.get("actions") or []
        self.fields["effect"].initial = statement["effect"]
        self.fields["actions"].initial = [action for action in listed if action in ACTIONS]
        # Names outside the catalogue are kept as the API stored them: they grant nothing.
        self.unknown_actions = [action for action in listed if action not in ACTIONS]

    def clean(self):
        cleaned = super().clean()
        if "effect" not in cleaned:
            return cleaned
        statement = {
            "effect": cleaned["effect"],
            "actions": sorted(cleaned["actions"]) + self.unknown_actions,
        }
        account = cleaned.get("account") or (self.instance.account if self.instance.account_id else None)
        if account is not None:
            try:
                services.ensure_no_escalation(
                    acting_user=self.acting_user, account=account, statement=statement
                )
            except ApplicationError as error:
                raise refusal(error) from None
        cleaned["statement"] = statement
        return cleaned


def statement_summary(statement: dict | None) -> str:
    statement = statement or EVERYTHING
    listed = statement.get("actions")
    if statement["effect"] == "deny":
        return f"every action except {len(listed)}" if listed else "every action"
    return f"only {len(listed)} actions" if listed else "no action"


@admin.register(Role)
class RoleAdmin(UuidSearch, admin.ModelAdmin):
    form = RoleForm
    list_display = ["name", "account", "grants", "user_count", "created_at"]
    list_select_related = ["account"]
    list_filter = ["account"]
    search_fields = ["name"]
    uuid_search_fields = ("uuid",)
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(user_count=Count("users"))

    def get_fieldsets(self, request, obj=None):
        held = ["held"] if obj is not None else []
        return [
            (None, {"fields": ["account", "name"]}),
            ("Statement", {"fields": ["effect", "actions", *held]}),
            ("Rules (stored, not evaluated)", {"fields": ["rules"], "classes": ["collapse"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        return ["account", "held"] if obj is not None else []

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.acting_user = request.user
        return form

    @admin.display(description="grants")
    def grants(self, role):
        return statement_summary(role.statement)

    @admin.display(description="users", ordering="user_count")
    def user_count(self, role):
        return role.user_count

    @admin.display(description="held through guardian")
    def held(self, role):
        codenames = sorted(
            GroupObjectPermission.objects.filter(
                group=role.group, object_pk=str(role.account_id)
            ).values_list("permission__codename", flat=True)
        )
        return ", ".join(codenames) or "nothing"

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            saved = services.role_update(
                role=obj,
                acting_user=request.user,
                name=data["name"],
                statement=data["statement"],
                rules=data["rules"],
            )
        else:
            saved = services.role_create(
                account=data["account"],
                name=data["name"],
                statement=data["statement"],
                rules=data["rules"],
                acting_user=request.user,
            )
        adopt(obj, saved)

    def has_delete_permission(self, request, obj=None):
        # A role in use cannot go (users always have a role: docs/contract.md, section 2).
        if obj is not None and obj.users.exists():
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_model(self, request, obj):
        services.role_delete(role=obj)


# Users


class AccountUserForm(forms.ModelForm):
    acting_user = None

    class Meta:
        model = AccountUser
        fields = ["account", "role", "name", "description"]

    def clean(self):
        cleaned = super().clean()
        role = cleaned.get("role")
        account = cleaned.get("account") or (self.instance.account if self.instance.account_id else None)
        if role is None or account is None:
            return cleaned
        if role.account_id != account.pk:
            raise ValidationError({"role": "The role belongs to another account."})
        if role.pk != self.instance.role_id:
            try:
                services.ensure_no_escalation(
                    acting_user=self.acting_user, account=account, statement=role.statement
                )
            except ApplicationError as error:
                raise refusal(error) from None
        return cleaned


@admin.register(AccountUser)
class AccountUserAdmin(UuidSearch, admin.ModelAdmin):
    form = AccountUserForm
    list_display = ["name", "uuid", "account", "role", "created_at"]
    list_select_related = ["account", "role"]
    list_filter = ["account"]
    search_fields = ["name"]
    uuid_search_fields = ("uuid",)
    show_full_result_count = False

    def get_fields(self, request, obj=None):
        fields = ["account", "role", "name", "description"]
        return fields if obj is None else ["uuid", "sign_in", *fields]

    def get_readonly_fields(self, request, obj=None):
        return ["uuid", "sign_in", "account"] if obj is not None else []

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.acting_user = request.user
        if obj is not None:
            form.base_fields["role"].queryset = Role.objects.filter(account=obj.account)
        return form

    @admin.display(description="sign-in for the web pages")
    def sign_in(self, account_user):
        return format_html(
            'user id <code>{}</code> · <a href="{}">set a password</a>',
            account_user.user.get_username(),
            reverse("admin:auth_user_password_change", args=[account_user.user_id]),
        )

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            saved = services.user_update(
                account_user=obj,
                acting_user=request.user,
                name=data["name"],
                role=data["role"],
                description=data["description"],
            )
        else:
            saved = services.user_create(
                account=data["account"],
                role=data["role"],
                name=data["name"],
                description=data["description"],
                acting_user=request.user,
            )
        adopt(obj, saved)

    def delete_model(self, request, obj):
        services.user_delete(account_user=obj)

    def delete_queryset(self, request, queryset):
        for account_user in queryset:
            services.user_delete(account_user=account_user)


# Secrets


class UserSecretForm(forms.ModelForm):
    class Meta:
        model = UserSecret
        fields = ["account_user", "validity_at"]

    def validate_unique(self):
        # A user has one secret, and issuing a new one replaces it (secret_issue).
        pass


@admin.register(UserSecret)
class UserSecretAdmin(admin.ModelAdmin):
    form = UserSecretForm
    list_display = ["account_user", "fingerprint", "validity_at", "created_at"]
    list_select_related = ["account_user"]
    autocomplete_fields = ["account_user"]
    search_fields = ["account_user__name", "fingerprint"]
    show_full_result_count = False

    def get_fields(self, request, obj=None):
        return (
            ["account_user", "validity_at"] if obj is None else ["account_user", "fingerprint", "validity_at"]
        )

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["account_user", "fingerprint"]

    def save_model(self, request, obj, form, change):
        validity_at = form.cleaned_data["validity_at"]
        if change:
            services.secret_update(secret=obj, validity_at=validity_at, acting_user=request.user)
            return
        issued = services.secret_issue(
            account_user=form.cleaned_data["account_user"], validity_at=validity_at, acting_user=request.user
        )
        adopt(obj, issued.secret)
        messages.warning(
            request,
            f"The new secret of {issued.secret.account_user.name} is {issued.raw} — copy it now: "
            "it is shown only this once, and it replaces the user's earlier secret.",
        )

    def delete_model(self, request, obj):
        services.secret_delete(secret=obj)

    def delete_queryset(self, request, queryset):
        for secret in queryset:
            services.secret_delete(secret=secret)

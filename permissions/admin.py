from django.contrib import admin

from permissions.models import Account, AccountUser, Role, UserSecret


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "uuid", "created_at"]
    search_fields = ["name", "uuid"]


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "created_at"]
    list_select_related = ["account"]
    search_fields = ["name", "uuid"]
    exclude = ["group"]


@admin.register(AccountUser)
class AccountUserAdmin(admin.ModelAdmin):
    list_display = ["name", "uuid", "account", "role", "created_at"]
    list_select_related = ["account", "role"]
    search_fields = ["name", "uuid"]


@admin.register(UserSecret)
class UserSecretAdmin(admin.ModelAdmin):
    list_display = ["account_user", "fingerprint", "validity_at", "created_at"]
    list_select_related = ["account_user"]
    readonly_fields = ["digest", "fingerprint"]

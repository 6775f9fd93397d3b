"""Roles that existed before get_webhook_subscriptions and delete_webhook_subscription were
actions get them as their statements say (a role allowing everything, or denying only other
actions, now holds them), the way role_sync_permissions would have."""

from django.db import migrations

NEW_ACTIONS = ("get_webhook_subscriptions", "delete_webhook_subscription")


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    from permissions.statements import granted_actions

    # The permission rows are normally made after migrating; the roles need them now.
    config = apps.get_app_config("permissions")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None

    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Role = apps.get_model("permissions", "Role")
    GroupObjectPermission = apps.get_model("guardian", "GroupObjectPermission")
    content_type = ContentType.objects.get(app_label="permissions", model="account")
    permissions = dict(
        Permission.objects.filter(content_type=content_type, codename__in=NEW_ACTIONS).values_list(
            "codename", "pk"
        )
    )
    for role in Role.objects.all().iterator():
        for action in granted_actions(role.statement, catalogue=NEW_ACTIONS):
            GroupObjectPermission.objects.get_or_create(
                group_id=role.group_id,
                permission_id=permissions[action],
                content_type=content_type,
                object_pk=str(role.account_id),
            )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0003_subscription_host_and_leases"),
        ("permissions", "0006_webhook_subscription_actions"),
        ("guardian", "0003_remove_groupobjectpermission_guardian_gr_content_ae6aec_idx_and_more"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]

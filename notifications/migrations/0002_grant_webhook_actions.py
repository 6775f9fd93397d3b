"""Roles that existed before the webhook actions get them when their statement grants them
(a full-access role, a deny list), as if their statement had been saved again."""

from django.db import migrations

from permissions.statements import granted_actions

NEW_ACTIONS = (
    "webhook_subscribe",
    "webhook_confirm_subscription",
    "webhook_unsubscribe",
    "webhook_refresh_subscription",
)


def grant(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Role = apps.get_model("permissions", "Role")
    GroupObjectPermission = apps.get_model("guardian", "GroupObjectPermission")
    content_type, _ = ContentType.objects.get_or_create(app_label="permissions", model="account")
    permissions = {
        action: Permission.objects.get_or_create(
            content_type=content_type, codename=action, defaults={"name": action}
        )[0]
        for action in NEW_ACTIONS
    }
    for role in Role.objects.all().iterator():
        for action in granted_actions(role.statement, catalogue=NEW_ACTIONS):
            GroupObjectPermission.objects.get_or_create(
                group_id=role.group_id,
                permission=permissions[action],
                content_type=content_type,
                object_pk=str(role.account_id),
            )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("permissions", "0003_webhook_actions"),
        ("guardian", "0003_remove_groupobjectpermission_guardian_gr_content_ae6aec_idx_and_more"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]

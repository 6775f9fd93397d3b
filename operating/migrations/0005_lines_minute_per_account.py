import django.db.models.deletion
from django.db import migrations, models

# The dashboard's minutes become one row per account and minute, so that a chunk's commit never
# waits on another account's. The old rows have no account and are dropped: they are at most
# the two days of the dashboard's chart, which fills again from the next chunk on.


class Migration(migrations.Migration):
    dependencies = [
        ("operating", "0004_worker_heartbeat"),
        ("permissions", "0006_webhook_subscription_actions"),
    ]

    operations = [
        migrations.DeleteModel(name="LinesMinute"),
        migrations.CreateModel(
            name="LinesMinute",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("minute", models.DateTimeField()),
                ("lines", models.BigIntegerField(default=0)),
                ("failed", models.BigIntegerField(default=0)),
                (
                    "account",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="permissions.account",
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("minute", "account"), name="lines_minute_account")],
            },
        ),
    ]

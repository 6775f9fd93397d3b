from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0003_batch_one_retry"),
    ]

    operations = [
        migrations.AddField(
            model_name="batch",
            name="error_budget",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="batch",
            name="validate_only",
            field=models.BooleanField(default=False),
        ),
    ]

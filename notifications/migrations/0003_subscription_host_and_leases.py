"""Each subscription's callback host (tries at once are capped per receiver host) and an
index for the tries in flight (leased deliveries)."""

from urllib.parse import urlsplit

from django.db import migrations, models


def fill_callback_host(apps, schema_editor):
    Subscription = apps.get_model("notifications", "Subscription")
    for subscription in Subscription.objects.filter(callback_host="").iterator():
        try:
            host = urlsplit(subscription.callback_url).hostname or ""
        except ValueError:
            host = ""
        Subscription.objects.filter(pk=subscription.pk).update(callback_host=host[:255])


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_grant_webhook_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="subscription",
            name="callback_host",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["state", "leased_until"], name="delivery_leased"),
        ),
        migrations.AddIndex(
            model_name="subscription",
            index=models.Index(fields=["callback_host"], name="subscription_host"),
        ),
        migrations.RunPython(fill_callback_host, migrations.RunPython.noop),
    ]

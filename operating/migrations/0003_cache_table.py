"""The database cache's table (the default shared cache, which holds the throttle's
counters), made wherever migrations run, so no deployment can miss `createcachetable`."""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("operating", "0002_grant_usage_actions")]

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]

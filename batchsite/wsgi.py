import os

from django.core.wsgi import get_wsgi_application
from django.db.backends.signals import connection_created

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "batchsite.settings")


def request_statement_limit(sender, connection, **_) -> None:
    """A web process's statements run at most DATABASE_STATEMENT_TIMEOUT_SECONDS (a request is
    never slower than that on the database); other processes set their own limits."""
    from django.conf import settings

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            milliseconds = int(settings.DATABASE_STATEMENT_TIMEOUT_SECONDS * 1000)
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [str(milliseconds)])


connection_created.connect(request_statement_limit, dispatch_uid="batchsite.wsgi.statement_limit")
application = get_wsgi_application()

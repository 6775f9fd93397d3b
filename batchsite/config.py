"""Prints resolved settings, one `NAME=value` a line: `python -m batchsite.config PORT DATA_DIR`.

The Makefile asks here rather than keep defaults of its own, so make targets, manage.py,
gunicorn and Celery resolve every variable the same way: the environment, then `.env`, then
the defaults of batchsite/settings.py. `DATABASE` is the database's engine and name (never its
password); `--value NAME` prints one bare value, for the Makefile.
"""

import os
import sys


def describe(settings, name: str) -> str:
    if name == "DATABASE":
        database = settings.DATABASES["default"]
        return f"{database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}"
    return str(getattr(settings, name))


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "batchsite.settings")
    from django.conf import settings

    if argv[:1] == ["--value"]:
        print(describe(settings, argv[1]))
        return 0
    for name in argv or ["PORT", "WEB_WORKERS", "DATA_DIR", "DATABASE", "ENV_FILE"]:
        print(f"{name}={describe(settings, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

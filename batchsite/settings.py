"""Settings, all from the environment.

Every variable has an embedded default that needs no server: SQLite, local files and
kombu's filesystem broker under DATA_DIR. `.env.example` names every variable.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    # A per-installation key kept under DATA_DIR, so signed upload URLs survive restarts
    # and every process of one installation (web, worker) signs alike.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        from django.core.management.utils import get_random_secret_key

        key_file.write_text(get_random_secret_key())
    SECRET_KEY = key_file.read_text().strip()

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "guardian",
    "storages",
    "permissions",
    "twins",
    "batches",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "batchsite.urls"
WSGI_APPLICATION = "batchsite.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and worker processes share one file: WAL lets readers run beside the
    # writer, IMMEDIATE makes writers queue on the busy timeout instead of failing with
    # "database is locked" when a read transaction tries to upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not memory, so live servers and worker processes started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = DATA_DIR / "files"

STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# S3 (or any S3-compatible store) when a bucket is named: uploads and results downloads then
# go through presigned URLs straight to the bucket. Without keys, boto3 finds credentials
# itself (instance role, ~/.aws). Files read from S3 spool to disk past 8 MiB, not memory.
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    s3_options = {
        "bucket_name": AWS_STORAGE_BUCKET_NAME,
        "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default=""),
        "access_key": env.str("AWS_ACCESS_KEY_ID", default=""),
        "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default=""),
        "region_name": env.str("AWS_S3_REGION_NAME", default=""),
        "max_memory_size": 8 * 1024 * 1024,
        "signature_version": "s3v4",
    }
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {name: value for name, value in s3_options.items() if value},
    }

# Messages live in the session, not a cookie: the admin shows a new secret once in one.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

LOGIN_URL = "/ui/login"
LOGIN_REDIRECT_URL = "/ui/batches"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "permissions.authentication.SecretAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["permissions.access.HasAction"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "batchsite.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_RATES": {"secret_pin": env.str("PIN_THROTTLE_RATE", default="30/min")},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Batch service",
    "DESCRIPTION": "Runs one API operation over every line of an uploaded file. "
    "Wire-compatible with Trusted Twin's API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Batches, PATCH /batches and twins each have a "status"; name the batch statuses.
    "ENUM_NAME_OVERRIDES": {"BatchStatusEnum": "batches.models.BatchStatus"},
}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR = DATA_DIR / "broker"
    (BROKER_DIR / "queue").mkdir(parents=True, exist_ok=True)
    # kombu keeps the exchange bindings in `control_folder`, relative to the working
    # directory unless set: it belongs with the queue, or processes started elsewhere miss it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # The filesystem transport polls; the default second would delay every step.
        "polling_interval": 0.1,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Product limits and lifetimes (SPEC sections 3, 5, 6).
UPLOAD_URL_VALIDITY_SECONDS = env.int("UPLOAD_URL_VALIDITY_SECONDS", default=3600)
DOWNLOAD_URL_VALIDITY_SECONDS = env.int("DOWNLOAD_URL_VALIDITY_SECONDS", default=3600)
SECRET_PIN_VALIDITY_SECONDS = env.int("SECRET_PIN_VALIDITY_SECONDS", default=600)
BATCH_FILE_MAX_BYTES = env.int("BATCH_FILE_MAX_BYTES", default=1024**3)
BATCH_LINE_MAX_BYTES = env.int("BATCH_LINE_MAX_BYTES", default=64 * 1024)
BATCH_MAX_LINES = env.int("BATCH_MAX_LINES", default=10_000_000)
RESULTS_RETENTION_DAYS = env.int("RESULTS_RETENTION_DAYS", default=30)
VALIDATION_REPORT_MAX_LINES = env.int("VALIDATION_REPORT_MAX_LINES", default=10_000)

# The pipeline (SPEC section 7): lines per chunk (the unit of work and of recovery), lines
# between two looks at a cancel, how many chunk workers one batch may occupy at once, how
# many chunks one task runs before queueing itself again behind other batches, and
# how long a non-terminal batch may go without a heartbeat before maintenance resumes it.
BATCH_CHUNK_LINES = env.int("BATCH_CHUNK_LINES", default=1000)
BATCH_CANCEL_CHECK_LINES = env.int("BATCH_CANCEL_CHECK_LINES", default=500)
BATCH_CHUNK_WORKERS = env.int("BATCH_CHUNK_WORKERS", default=8)
BATCH_CHUNKS_PER_TASK = env.int("BATCH_CHUNKS_PER_TASK", default=50)
BATCH_STUCK_AFTER_SECONDS = env.int("BATCH_STUCK_AFTER_SECONDS", default=300)
MAINTENANCE_INTERVAL_SECONDS = env.int("MAINTENANCE_INTERVAL_SECONDS", default=60)
CELERY_BEAT_SCHEDULE = {
    "batches-maintain": {
        "task": "batches.tasks.batches_maintain",
        "schedule": MAINTENANCE_INTERVAL_SECONDS,
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# Pages that work with no internet (issue 13): Swagger UI from the pinned
# drf-spectacular-sidecar package through whitenoise, and a Content-Security-Policy that
# allows only the site itself (batchsite/security.py).
INSTALLED_APPS += ["drf_spectacular_sidecar"]
MIDDLEWARE.insert(1, "batchsite.security.ContentSecurityPolicyMiddleware")
SPECTACULAR_SETTINGS.update(
    {
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "REDOC_DIST": "SIDECAR",
        # No online validator badge: it would load an image from another site.
        "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
        # OpenAPI 3.1 schemas are JSON Schema, so key patterns (`propertyNames`) are part of it.
        "OAS_VERSION": "3.1.0",
        # A PATCH body's required fields stay required (PATCH /twins needs `description`).
        "COMPONENT_SPLIT_PATCH": False,
        # Every status each operation can answer, with the error body, and the links between
        # operations (batchsite/schema.py).
        "POSTPROCESSING_HOOKS": [
            "drf_spectacular.hooks.postprocess_schema_enums",
            "batchsite.schema.complete_operations",
        ],
    }
)
# The API reads JSON bodies only, as its schema says (a form would be a second, untested
# dialect); uploads are read raw by their own view.
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["rest_framework.parsers.JSONParser"]
REST_FRAMEWORK["TEST_REQUEST_DEFAULT_FORMAT"] = "json"

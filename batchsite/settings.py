"""Settings, all from the environment.

Every variable has an embedded default that needs no server: SQLite, local files and
kombu's filesystem broker under DATA_DIR. `.env.example` names every variable.

Each setting is written once, in its final form, grouped by concern. What importing this module
does besides computing values (folders, the broker's transports, prometheus-client's folder, a
warning) is in its last section.
"""

import os
import sys
from pathlib import Path

import environ
import kombu.transport
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

# Where settings come from. ----------------------------------------------------------------
BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# One source of settings for every process (make targets, manage.py, gunicorn, Celery): the
# environment, then the `.env` file (ENV_FILE, default `.env` next to manage.py), then the
# defaults below. A variable set in the environment wins over the same one in the file. The
# Makefile keeps no defaults of its own; it asks this module (`python -m batchsite.config`).
# Read before any value below, since it fills the environment they are read from.
ENV_FILE = Path(env.str("ENV_FILE", default=str(BASE_DIR / ".env")))
environ.Env.read_env(ENV_FILE, overwrite=False)

# A relative DATA_DIR is taken from the checkout, not the working directory, so `make` and
# `manage.py` run from elsewhere find the same data.
DATA_DIR = (BASE_DIR / env.str("DATA_DIR", default="var")).resolve()

# The web server. --------------------------------------------------------------------------
# Read by `make run` and `make web` (through batchsite.config) and the systemd units.
PORT = env.int("PORT", default=8000)
WEB_WORKERS = env.int("WEB_WORKERS", default=4)
# Read by gunicorn (batchsite/gunicorn_conf.py, batchsite/serving.py): threads per process,
# seconds before a silent process is replaced, and the slow-client deadlines.
WEB_THREADS = env.int("WEB_THREADS", default=4)
WEB_TIMEOUT = env.int("WEB_TIMEOUT", default=60)
WEB_HEADER_TIMEOUT = env.float("WEB_HEADER_TIMEOUT", default=5)
WEB_BODY_IDLE_TIMEOUT = env.float("WEB_BODY_IDLE_TIMEOUT", default=10)
WEB_BODY_MIN_BYTES_PER_SECOND = env.float("WEB_BODY_MIN_BYTES_PER_SECOND", default=10240)
# The address to bind; empty: 127.0.0.1 for `make run`, 0.0.0.0 for `make web`.
HOST = env.str("HOST", default="")


# The signing key and the hosts served (docs/security.md#what-a-deployment-must-set). ------
def installation_secret_key(key_file: Path) -> str:
    """The key kept in `key_file`, written there on first use."""
    if not key_file.exists():
        from django.core.management.utils import get_random_secret_key

        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(get_random_secret_key())
    return key_file.read_text().strip()


# Without SECRET_KEY, a per-installation key kept under DATA_DIR, so signed upload URLs survive
# restarts and every process of one installation (web, worker) signs alike.
SECRET_KEY_GENERATED = not env.str("SECRET_KEY", default="")
SECRET_KEY = (
    installation_secret_key(DATA_DIR / "secret_key") if SECRET_KEY_GENERATED else env.str("SECRET_KEY")
)

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Absolute URLs (upload and download URLs) are built from PUBLIC_URL, or else from a Host that
# ALLOWED_HOSTS checked: a wildcard without PUBLIC_URL would put any client's Host in them.
PUBLIC_URL = env.str("PUBLIC_URL", default="").rstrip("/")
if "*" in ALLOWED_HOSTS and not PUBLIC_URL:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS=* needs PUBLIC_URL (e.g. https://batches.example.com): absolute URLs "
        "are never built from an unchecked Host header."
    )

# Behind a proxy. --------------------------------------------------------------------------
# How many proxies in front of the web server append to X-Forwarded-For; 0 ignores the header.
# The throttles and the sign-in lockout key on the client address this gives.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# One switch for a deployment behind a TLS-terminating proxy that sets X-Forwarded-Proto
# (overwriting any the client sent): HSTS, secure cookies, redirect to https. /healthz stays
# reachable over plain http for load balancers' checks.
HTTPS = env.bool("HTTPS", default=False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# Apps, requests and pages. ----------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "guardian",
    "storages",
    "permissions",
    "twins",
    "batches",
    "notifications",
    "operating",
    # Swagger UI from this pinned package through whitenoise, so the pages work with no
    # internet (issue 13).
    "drf_spectacular_sidecar",
]

MIDDLEWARE = [
    # First: it times and counts every request and sets the log context (trace, account).
    "operating.middleware.OperatingMiddleware",
    # A Content-Security-Policy that allows only the site itself (and the bucket uploads go
    # to), on every answer, including those the middleware below gives.
    "batchsite.security.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "batchsite.middleware.MethodNotAllowedMiddleware",
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
# Messages live in the session, not a cookie: the admin shows a new secret once in one.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The database and the cache. --------------------------------------------------------------
# Liveness (docs/scaling-and-failure-model.md#failure-model): the server ends a session that
# sits in a transaction without a statement for DATABASE_IDLE_IN_TRANSACTION_SECONDS (a frozen
# or cut-off process: its locks go with it) and a statement waits at most
# DATABASE_LOCK_TIMEOUT_SECONDS for a lock, on every connection; a web request's statements run
# at most DATABASE_STATEMENT_TIMEOUT_SECONDS (batchsite/wsgi.py; a migration has no such limit).
# The pipeline's chunks, steps and sweep set their own (batches/pipeline/sessions.py). TCP
# keepalives, on both ends, find a peer that vanished within about DATABASE_KEEPALIVE_SECONDS * 2.
DATABASE_IDLE_IN_TRANSACTION_SECONDS = env.float("DATABASE_IDLE_IN_TRANSACTION_SECONDS", default=30)
DATABASE_LOCK_TIMEOUT_SECONDS = env.float("DATABASE_LOCK_TIMEOUT_SECONDS", default=5)
DATABASE_STATEMENT_TIMEOUT_SECONDS = env.float("DATABASE_STATEMENT_TIMEOUT_SECONDS", default=30)
DATABASE_KEEPALIVE_SECONDS = env.int("DATABASE_KEEPALIVE_SECONDS", default=10)

database = env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")
if database["ENGINE"] == "django.db.backends.sqlite3":
    database |= {
        # The web server and worker processes share one file: WAL lets readers run beside the
        # writer, IMMEDIATE makes writers queue on the busy timeout instead of failing with
        # "database is locked" when a read transaction tries to upgrade.
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
        # A file, not memory, so live servers and worker processes started by tests share it.
        "TEST": {"NAME": str(DATA_DIR / "test-db.sqlite3")},
    }
else:
    database |= {"CONN_MAX_AGE": env.int("CONN_MAX_AGE", default=60), "CONN_HEALTH_CHECKS": True}
if database["ENGINE"] == "django.db.backends.postgresql":
    keepalive_every = max(1, DATABASE_KEEPALIVE_SECONDS // 3)
    database["OPTIONS"] = {
        **database.get("OPTIONS", {}),
        "keepalives": 1,
        "keepalives_idle": DATABASE_KEEPALIVE_SECONDS,
        "keepalives_interval": keepalive_every,
        "keepalives_count": 3,
        "options": " ".join(
            f"-c {name}={value}"
            for name, value in {
                "idle_in_transaction_session_timeout": int(DATABASE_IDLE_IN_TRANSACTION_SECONDS * 1000),
                "lock_timeout": int(DATABASE_LOCK_TIMEOUT_SECONDS * 1000),
                "tcp_keepalives_idle": DATABASE_KEEPALIVE_SECONDS,
                "tcp_keepalives_interval": keepalive_every,
                "tcp_keepalives_count": 3,
                # The service's queries are short; JIT compiling them once their estimated cost
                # passed its threshold took the sweep 0.5 s of compiling for 0.07 s of work with
                # 55,000 waiting batches (bench/README.md, waiting batches).
                "jit": "off",
            }.items()
        ),
    }
DATABASES = {"default": database}

# The cache every process shares: the database's cache table (the operating app's migrations
# make it) unless CACHE_URL names one, e.g. redis://127.0.0.1:6379/1. Throttle and lockout counts
# (permissions.counters) go to that Redis when it is one, else to their own table.
CACHE_URL = env.str("CACHE_URL", default="")
CACHES = {
    "default": env.cache_url_config(CACHE_URL)
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "operating_cache"}
}

# Files. -----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
MEDIA_ROOT = DATA_DIR / "files"
# S3 (or any S3-compatible store) when a bucket is named: uploads and results downloads then
# go through presigned URLs straight to the bucket. Without keys, boto3 finds credentials
# itself (instance role, ~/.aws). Files read from S3 spool to disk past 8 MiB, not memory.
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
s3_options = {
    "bucket_name": AWS_STORAGE_BUCKET_NAME,
    "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default=""),
    "access_key": env.str("AWS_ACCESS_KEY_ID", default=""),
    "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default=""),
    "region_name": env.str("AWS_S3_REGION_NAME", default=""),
    "max_memory_size": 8 * 1024 * 1024,
    "signature_version": "s3v4",
}
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {name: value for name, value in s3_options.items() if value},
    }
    if AWS_STORAGE_BUCKET_NAME
    else {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Accounts and signing in. -----------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/ui/login"
LOGIN_REDIRECT_URL = "/ui/batches"
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=900)

# The API. ---------------------------------------------------------------------------------
# Per account, over every process, on the shared cache (operating.throttling).
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="6000/min")
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
    # The API reads JSON bodies only, as its schema says (a form would be a second, untested
    # dialect); uploads are read raw by their own view.
    "DEFAULT_PARSER_CLASSES": ["batchsite.parsers.SafeJSONParser"],
    "UNAUTHENTICATED_USER": None,
    # PIN exchange tries (permissions.throttles): PIN_THROTTLE_RATE per source, the next per
    # source at one account, the ceiling at one account from all sources (past it, a source's
    # first try only).
    "DEFAULT_THROTTLE_RATES": {
        "secret_pin": env.str("PIN_THROTTLE_RATE", default="30/min"),
        "secret_pin_account": env.str("PIN_ACCOUNT_THROTTLE_RATE", default="100/hour"),
        "secret_pin_account_ceiling": env.str("PIN_ACCOUNT_CEILING_RATE", default="1000/hour"),
    },
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_THROTTLE_CLASSES": ["operating.throttling.AccountRateThrottle"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Batch service",
    "DESCRIPTION": "Runs one API operation over every line of an uploaded file. "
    "Wire-compatible with Trusted Twin's API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Batches, PATCH /batches and twins each have a "status"; name the batch statuses.
    "ENUM_NAME_OVERRIDES": {"BatchStatusEnum": "batches.models.BatchStatus"},
    # The docs pages' scripts and styles from drf-spectacular-sidecar, not a CDN (issue 13).
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
        "batches.schema.mixed_line_schema",
    ],
}

# Product limits and lifetimes (docs/contract.md, sections 3, 5, 6). -----------------------
UPLOAD_URL_VALIDITY_SECONDS = env.int("UPLOAD_URL_VALIDITY_SECONDS", default=3600)
DOWNLOAD_URL_VALIDITY_SECONDS = env.int("DOWNLOAD_URL_VALIDITY_SECONDS", default=3600)
SECRET_PIN_VALIDITY_SECONDS = env.int("SECRET_PIN_VALIDITY_SECONDS", default=600)
BATCH_FILE_MAX_BYTES = env.int("BATCH_FILE_MAX_BYTES", default=1024**3)
BATCH_LINE_MAX_BYTES = env.int("BATCH_LINE_MAX_BYTES", default=64 * 1024)
BATCH_MAX_LINES = env.int("BATCH_MAX_LINES", default=10_000_000)
# Hostile input (docs/security.md#hostile-input): what one batch file may make a worker do, and how
# deeply any JSON (a batch line or a request body) may nest.
BATCH_DECOMPRESSED_MAX_BYTES = env.int("BATCH_DECOMPRESSED_MAX_BYTES", default=4 * BATCH_FILE_MAX_BYTES)
BATCH_CSV_MAX_CELLS = env.int("BATCH_CSV_MAX_CELLS", default=1000)
# A gzip member per 64 KiB block (bgzip) of the largest file allowed fits; a flood of empty
# members (no byte out, so no other limit counts it) stops here.
BATCH_GZIP_MAX_MEMBERS = env.int("BATCH_GZIP_MAX_MEMBERS", default=100_000)
BATCH_JSON_MAX_DEPTH = env.int("BATCH_JSON_MAX_DEPTH", default=64)
RESULTS_RETENTION_DAYS = env.int("RESULTS_RETENTION_DAYS", default=30)
VALIDATION_REPORT_MAX_LINES = env.int("VALIDATION_REPORT_MAX_LINES", default=10_000)

# The pipeline (docs/contract.md, section 7). ----------------------------------------------
# Lines per chunk (the unit of work and of recovery), lines between two looks at a cancel, how
# many chunk workers one batch asks for at once, and how long one chunk task runs before
# queueing itself again behind other work.
BATCH_CHUNK_LINES = env.int("BATCH_CHUNK_LINES", default=1000)
BATCH_CANCEL_CHECK_LINES = env.int("BATCH_CANCEL_CHECK_LINES", default=500)
# Operations with a set executor run a chunk as a few set-based statements on PostgreSQL;
# off, every line takes the bulk path (the tests compare the two).
BATCH_SET_EXECUTION = env.bool("BATCH_SET_EXECUTION", default=True)
BATCH_CHUNK_WORKERS = env.int("BATCH_CHUNK_WORKERS", default=8)
BATCH_SLICE_SECONDS = env.float("BATCH_SLICE_SECONDS", default=1.0)
# From how many lines an uncompressed JSON Lines file is validated a chunk at a time by the
# chunk workers rather than in one pass (below it one pass is quicker than the round trip).
BATCH_VALIDATE_PARALLEL_MIN_LINES = env.int("BATCH_VALIDATE_PARALLEL_MIN_LINES", default=20_000)
# Recovery (docs/scaling-and-failure-model.md#failure-model): a single-worker step's lease
# (renewed every second while it works; a lost worker's step resumes once it expires), how
# often the sweep looks for batches no worker is moving, how long a passing status may wait
# before it is asked for again, how long processing may go without a committed chunk, when a
# batch that is not moving is logged as an error, and the interval of housekeeping (uploads,
# orphans, retention).
BATCH_LEASE_SECONDS = env.int("BATCH_LEASE_SECONDS", default=30)
# A chunk's lease (renewed while it runs): a frozen or cut-off worker's chunk is taken over once
# it expires, and that worker's database session is ended after as long idle.
BATCH_CHUNK_LEASE_SECONDS = env.int("BATCH_CHUNK_LEASE_SECONDS", default=30)
PIPELINE_SWEEP_SECONDS = env.float("PIPELINE_SWEEP_SECONDS", default=5)
PIPELINE_KICK_AFTER_SECONDS = env.float("PIPELINE_KICK_AFTER_SECONDS", default=5)
BATCH_STUCK_AFTER_SECONDS = env.int("BATCH_STUCK_AFTER_SECONDS", default=60)
BATCH_ALARM_AFTER_SECONDS = env.int("BATCH_ALARM_AFTER_SECONDS", default=3600)
MAINTENANCE_INTERVAL_SECONDS = env.int("MAINTENANCE_INTERVAL_SECONDS", default=60)
# A file in a batch's folder that the batch does not record (its step's publishing transition
# failed) is deleted by housekeeping once this old; the folders are listed this often.
ORPHAN_FILE_GRACE_SECONDS = env.int("ORPHAN_FILE_GRACE_SECONDS", default=3600)
# A request never waits longer than this for the broker; the sweep starts what was not sent.
BROKER_PUBLISH_TIMEOUT_SECONDS = env.float("BROKER_PUBLISH_TIMEOUT_SECONDS", default=2)

# Webhooks (docs/contract.md, section 10). -------------------------------------------------
# Callbacks on private addresses only when allowed (tests, a private network you trust); a
# try's whole time (connecting and the answer); retries doubling from the first delay up to the
# largest, for a day by default; how often beat sweeps for due deliveries; how long settled
# events are kept.
WEBHOOK_ALLOW_PRIVATE_HOSTS = env.bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", default=False)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10)
WEBHOOK_RETRY_FIRST_DELAY_SECONDS = env.float("WEBHOOK_RETRY_FIRST_DELAY_SECONDS", default=30)
WEBHOOK_RETRY_MAX_DELAY_SECONDS = env.float("WEBHOOK_RETRY_MAX_DELAY_SECONDS", default=3600)
WEBHOOK_RETRY_FOR_SECONDS = env.float("WEBHOOK_RETRY_FOR_SECONDS", default=24 * 3600)
WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=10)
WEBHOOK_EVENT_RETENTION_DAYS = env.int("WEBHOOK_EVENT_RETENTION_DAYS", default=30)
# Fairness between accounts: live subscriptions an account may hold, tries at once per account
# and per receiver host (a try over either waits a moment, it does not fail), and the processes
# of the webhooks worker pool.
WEBHOOK_MAX_SUBSCRIPTIONS_PER_ACCOUNT = env.int("WEBHOOK_MAX_SUBSCRIPTIONS_PER_ACCOUNT", default=10)
WEBHOOK_MAX_CONCURRENT_PER_ACCOUNT = env.int("WEBHOOK_MAX_CONCURRENT_PER_ACCOUNT", default=2)
WEBHOOK_MAX_CONCURRENT_PER_HOST = env.int("WEBHOOK_MAX_CONCURRENT_PER_HOST", default=2)
WEBHOOK_WORKERS = env.int("WEBHOOK_WORKERS", default=4)

# Operating it (docs/contract.md, section 12; docs/operations.md). -------------------------
# Quotas per account; the admin may set other values per account (AccountQuota).
QUOTA_MAX_ACTIVE_BATCHES = env.int("QUOTA_MAX_ACTIVE_BATCHES", default=10)
QUOTA_MAX_BATCH_LINES_PER_DAY = env.int("QUOTA_MAX_BATCH_LINES_PER_DAY", default=50_000_000)
QUOTA_MAX_UPLOAD_BYTES = env.int("QUOTA_MAX_UPLOAD_BYTES", default=BATCH_FILE_MAX_BYTES)
# Seconds a client is asked to wait when it has max_active_batches running.
QUOTA_ACTIVE_BATCHES_RETRY_AFTER = env.int("QUOTA_ACTIVE_BATCHES_RETRY_AFTER", default=30)
# API calls and quota refusals are counted in memory and written every few seconds, one
# upsert per account and hour, instead of a write per request.
USAGE_FLUSH_SECONDS = env.float("USAGE_FLUSH_SECONDS", default=5.0)
USAGE_RETENTION_DAYS = env.int("USAGE_RETENTION_DAYS", default=30)
# GET /healthz answers within this, whatever the broker or the storage do.
HEALTH_CHECK_SECONDS = env.float("HEALTH_CHECK_SECONDS", default=2.5)
# Operators' signals: an active batch with no heartbeat (a status change, a lease renewal, a
# committed or checked chunk) this long is stalled; how often each worker writes its own
# heartbeat, and for how long one counts as alive; storage with less than this share free is
# reported nearly full.
BATCH_STALL_AFTER_SECONDS = env.float("BATCH_STALL_AFTER_SECONDS", default=60)
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=15)
WORKER_ALIVE_SECONDS = env.float("WORKER_ALIVE_SECONDS", default=60)
STORAGE_LOW_FREE_RATIO = env.float("STORAGE_LOW_FREE_RATIO", default=0.1)
# Bearer token for /metrics and serve_metrics; unset, they answer only this host's clients that
# came through no proxy (operating.metrics.scrape_refusal).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# prometheus-client's multiprocess mode: every process (gunicorn's, Celery's) writes its
# samples under this folder and /metrics adds them up.
PROMETHEUS_MULTIPROC_DIR = Path(env.str("PROMETHEUS_MULTIPROC_DIR", default=str(DATA_DIR / "prometheus")))

# Logs: one line a record, plain or one JSON object (LOG_FORMAT=json), with the request's or
# the task's context (batchsite.logs).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "batchsite.logs.JsonFormatter"},
    },
    "filters": {
        # No credential in a URL (tokens, PINs) reaches a log: Django logs 5xx paths.
        "redact_tokens": {"()": "batchsite.redact.TokenRedactingFilter"},
        # A refused request is logged once, by batchsite.errors with its trace; Django's own
        # "Bad Request"/"Not Found" lines are kept for server errors only.
        "server_errors_only": {"()": "batchsite.errors.ServerErrorsOnly"},
        "context": {"()": "batchsite.logs.ContextFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["redact_tokens", "context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.request": {"filters": ["server_errors_only"]}},
}

# Celery: the broker, the queues, and what beat starts. ------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR = DATA_DIR / "broker"
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
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Bounded waits on the broker's socket: without them a broker that accepts a connection
    # and never answers blocks a publish for ever. Above kombu's 1 s BRPOP, so idle is fine.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 10, "socket_connect_timeout": 3}
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}
# Queues by workload: chunk slices on their own queue, so a pipeline step or a maintenance job
# never waits behind a queue of chunk work; webhook deliveries on theirs, taken by a pool of
# their own (`make worker WORKER_QUEUES=webhooks`), so a slow receiver never holds a process
# the pipeline needs. A worker started without --queues (`make run`'s) consumes all three.
CELERY_TASK_DEFAULT_QUEUE = "pipeline"
CELERY_TASK_QUEUES = (Queue("pipeline"), Queue("chunks"), Queue("webhooks"))
CELERY_TASK_ROUTES = {
    "batches.tasks.chunks_work": {"queue": "chunks"},
    "notifications.tasks.*": {"queue": "webhooks"},
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "batches-sweep": {"task": "batches.tasks.batches_sweep", "schedule": PIPELINE_SWEEP_SECONDS},
    "batches-housekeeping": {
        "task": "batches.tasks.batches_housekeeping",
        "schedule": MAINTENANCE_INTERVAL_SECONDS,
    },
    "notifications-sweep": {
        "task": "notifications.tasks.webhooks_sweep",
        "schedule": WEBHOOK_SWEEP_INTERVAL_SECONDS,
    },
    "operating-prune": {"task": "operating.tasks.usage_prune", "schedule": 3600},
}

# What importing the settings does. --------------------------------------------------------
# Every process (manage.py, gunicorn's master and workers, Celery's worker and beat, the
# Makefile's `python -m batchsite.config`) imports the settings before anything else, and there
# is no app of the ground whose ready() they would all run; so what each process needs before
# its first use is done here, once. Two effects come earlier because values depend on them:
# reading ENV_FILE, and writing the generated secret key (installation_secret_key).

# The folders the processes share, which none of their users makes: SQLite creates its file but
# not the folder; WhiteNoise warns at startup about a missing STATIC_ROOT; prometheus-client
# opens its sample files in its folder; the embedded broker's producers write into its queue
# folder and its consumers list it, whichever process comes first.
for folder in (DATA_DIR, STATIC_ROOT, PROMETHEUS_MULTIPROC_DIR):
    folder.mkdir(parents=True, exist_ok=True)
if CELERY_BROKER_URL.startswith("filesystem://"):
    (BROKER_DIR / "queue").mkdir(parents=True, exist_ok=True)

# prometheus-client reads its folder from the environment when first imported, so it is set
# before anything imports it.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)

# The broker URLs' schemes name this project's transports in every process that connects:
# `filesystem://` is batchsite.broker's (kombu's own lets a consumer read a message file before
# its producer has written it, which ends the worker); `redis://` and `rediss://` are
# batchsite.redis_broker's (with kombu's own, a worker exits when Redis restarts).
kombu.transport.TRANSPORT_ALIASES.update(
    {
        "filesystem": "batchsite.broker:Transport",
        "redis": "batchsite.redis_broker:Transport",
        "rediss": "batchsite.redis_broker:Transport",
    }
)

if SECRET_KEY_GENERATED and DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # A database server usually means several hosts, and each would generate its own key:
    # sessions and signed upload and download URLs would then fail on every other host.
    sys.stderr.write(
        "WARNING: SECRET_KEY is not set but DATABASE_URL names a database server. This host "
        f"signs with a key generated into {DATA_DIR / 'secret_key'}; set the same SECRET_KEY on "
        "every host, or sessions and upload/download URLs fail across hosts.\n"
    )

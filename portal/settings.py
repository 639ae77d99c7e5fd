"""Settings, read from the environment (django-environ); every variable is listed in README.md.

With nothing set, the portal runs on the embedded default: SQLite under var/, a filesystem
Celery broker, the local Iceberg lake and local identity. Production mode (PORTAL_ENV=production)
refuses to start on unsafe settings (a missing, default or short secret key, no or `*` allowed hosts,
debug on) and on the embedded parts unless PORTAL_ALLOW_EMBEDDED=true (see the end of this file).
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from portal import production

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"))

VAR_DIR = Path(env.str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

PORTAL_ENV = env.str("PORTAL_ENV", default="development")
if PORTAL_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"PORTAL_ENV must be 'development' or 'production', not {PORTAL_ENV!r}")
PRODUCTION = PORTAL_ENV == "production"

DEBUG = env.bool("DJANGO_DEBUG", default=not PRODUCTION)
if PRODUCTION:
    # No default may stand in for a secret in production (checked with the rest at the end of this file).
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[])
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=production.DEVELOPMENT_SECRET_KEY)
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "portal",
    "tenants",
    "metering",
    "portal.deployments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: turns a lockout into tenants.identity.lockout's answer
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "portal" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.provider",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers wait for each other instead of failing at once (the sink, the sync and a worker share the file).
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
DATABASES["default"]["TEST"] = {"NAME": env.str("DATABASE_TEST_NAME", default=None)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static"))
STATICFILES_DIRS = [BASE_DIR / "portal" / "static"]

LOGIN_URL = "/account/login/"
LOGIN_REDIRECT_URL = "/"  # the home page sends each user where they belong

# Email: the console locally; EMAIL_URL (smtp://user:pass@host:587) in production.
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@localhost")
# Every email is recorded and sent by a worker (tenants/services/email.py): a transient failure is retried
# EMAIL_MAX_ATTEMPTS times in all, EMAIL_RETRY_DELAY seconds after the first, doubling each time.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
EMAIL_MAX_ATTEMPTS = env.int("EMAIL_MAX_ATTEMPTS", default=8)
EMAIL_RETRY_DELAY = env.float("EMAIL_RETRY_DELAY", default=60.0)

# Webhooks (tenants/webhooks/): delivered by workers, retried after each wait of WEBHOOKS_RETRY_SCHEDULE
# (seconds; about a day in all), endpoints disabled after failing for WEBHOOKS_DISABLE_AFTER_DAYS.
# Private, loopback and link-local receivers are refused in production unless WEBHOOKS_ALLOW_PRIVATE.
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=not PRODUCTION)
WEBHOOKS_CONNECT_TIMEOUT = env.float("WEBHOOKS_CONNECT_TIMEOUT", default=3.0)
WEBHOOKS_READ_TIMEOUT = env.float("WEBHOOKS_READ_TIMEOUT", default=10.0)
WEBHOOKS_LEASE_SECONDS = env.float("WEBHOOKS_LEASE_SECONDS", default=60.0)
WEBHOOKS_RETRY_SCHEDULE = [float(s) for s in env.list(
    "WEBHOOKS_RETRY_SCHEDULE", default=["30", "120", "600", "1800", "3600", "7200", "14400", "28800", "36000"])]
WEBHOOKS_DISABLE_AFTER_DAYS = env.float("WEBHOOKS_DISABLE_AFTER_DAYS", default=5.0)
WEBHOOKS_SECRET_OVERLAP_HOURS = env.float("WEBHOOKS_SECRET_OVERLAP_HOURS", default=24.0)
if WEBHOOKS_LEASE_SECONDS <= WEBHOOKS_CONNECT_TIMEOUT + WEBHOOKS_READ_TIMEOUT:
    raise ImproperlyConfigured("WEBHOOKS_LEASE_SECONDS must be longer than WEBHOOKS_CONNECT_TIMEOUT + "
                               "WEBHOOKS_READ_TIMEOUT (a lease may not end while its worker still waits).")

# The provider: shown on invoices and pages.
PROVIDER_NAME = env.str("PROVIDER_NAME", default="Example SaaS Inc.")
PORTAL_BASE_URL = env.str("PORTAL_BASE_URL", default="http://127.0.0.1:8000")

# Celery: a broker that needs no server by default (files under var/celery), Redis via the URL.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _celery_dir = VAR_DIR / "celery"
    for _sub in ("queue", "processed", "control"):
        (_celery_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "data_folder_processed": str(_celery_dir / "processed"),
        # Broadcast exchanges (kombu's default is ./control, wherever the process was started).
        "control_folder": str(_celery_dir / "control"),
    }
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=f"db+sqlite:///{VAR_DIR / 'celery-results.sqlite3'}")
# The queue tasks go to when nothing routes them elsewhere (tests run workers on queues of their own).
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=60 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=55 * 60)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "portal.beat:Scheduler"  # django-celery-beat's DatabaseScheduler (schedules in the admin)
# Every periodic task every N seconds instead of its schedule (0: off): for tests and demos that watch beat work.
BEAT_EVERY_SECONDS = env.int("BEAT_EVERY_SECONDS", default=0)
CELERY_TIMEZONE = "UTC"
# A billing run, usage sync or deployment whose heartbeat is older than this is taken for dead (its
# worker was killed) and marked failed by the next run of its kind or the periodic check.
RUN_STALE_AFTER_SECONDS = env.int("RUN_STALE_AFTER_SECONDS", default=15 * 60)
# Subscriptions per chunk of a billing run: the unit a Celery worker takes, and takes again when its worker died.
BILLING_CHUNK_SIZE = env.int("BILLING_CHUNK_SIZE", default=500)

# The usage lake: "local" (pyiceberg SQL catalog + files under var/lake, read by DuckDB) or "athena".
LAKE_BACKEND = env.str("LAKE_BACKEND", default="local")
LAKE_WAREHOUSE_DIR = env.str("LAKE_WAREHOUSE_DIR", default=str(VAR_DIR / "lake"))
LAKE_DATABASE = env.str("LAKE_DATABASE", default="restapi_access_log_iceberg_db")
LAKE_TABLE = env.str("LAKE_TABLE", default="restapi_access_log_iceberg")
LAKE_SINK_MAX_RECORDS = env.int("LAKE_SINK_MAX_RECORDS", default=500)
LAKE_SINK_MAX_SECONDS = env.float("LAKE_SINK_MAX_SECONDS", default=60.0)
LAKE_DUCKDB_MEMORY_LIMIT = env.str("LAKE_DUCKDB_MEMORY_LIMIT", default="1GB")
LAKE_EVENTS_TABLE = env.str("LAKE_EVENTS_TABLE", default="events")

# Events posted to POST /api/v1/events/ (issue 15): where accepted events go, and what is accepted.
EVENTS_BACKEND = env.str("EVENTS_BACKEND", default="local")  # local (the portal's sink) or firehose
EVENTS_FIREHOSE_STREAM = env.str("EVENTS_FIREHOSE_STREAM", default="")
# The local sink's appenders move the spooled events into the events table on every multiple of this.
EVENTS_APPEND_SECONDS = env.float("EVENTS_APPEND_SECONDS", default=10.0)
EVENTS_MAX_PAST_DAYS = env.int("EVENTS_MAX_PAST_DAYS", default=35)
EVENTS_MAX_FUTURE_DAYS = env.int("EVENTS_MAX_FUTURE_DAYS", default=1)
EVENTS_MAX_EVENT_BYTES = env.int("EVENTS_MAX_EVENT_BYTES", default=8192)
EVENTS_MAX_BATCH = env.int("EVENTS_MAX_BATCH", default=1000)
EVENTS_REJECTIONS_KEEP_DAYS = env.int("EVENTS_REJECTIONS_KEEP_DAYS", default=7)

# Alerts (metering/services/alerts.py): who on staff hears of a failing sync or a late pipeline (default: the
# active staff logins' emails), and how far behind the pipeline may fall before they do.
ALERTS_STAFF_EMAILS = env.list("ALERTS_STAFF_EMAILS", default=[])
PIPELINE_LATE_ALERT_MINUTES = env.int("PIPELINE_LATE_ALERT_MINUTES", default=120)
AWS_REGION = env.str("AWS_REGION", default=env.str("AWS_DEFAULT_REGION", default="us-east-1"))
ATHENA_WORKGROUP = env.str("ATHENA_WORKGROUP", default="primary")
ATHENA_OUTPUT_LOCATION = env.str("ATHENA_OUTPUT_LOCATION", default="")
ATHENA_QUERY_TIMEOUT = env.int("ATHENA_QUERY_TIMEOUT", default=300)
USAGE_SYNC_LOOKBACK_HOURS = env.int("USAGE_SYNC_LOOKBACK_HOURS", default=3)
USAGE_SYNC_ATTEMPTS = env.int("USAGE_SYNC_ATTEMPTS", default=3)
USAGE_SYNC_RETRY_DELAY = env.float("USAGE_SYNC_RETRY_DELAY", default=2.0)
METERED_API_AUTHENTICATION = env.list(
    "METERED_API_AUTHENTICATION", default=["tenants.identity.authentication.TokenAuthentication"]
)

# Identity: "local" (portal users, portal-signed JWTs) or "cognito".
IDENTITY_BACKEND = env.str("IDENTITY_BACKEND", default="local")
COGNITO_USER_POOL_ID = env.str("COGNITO_USER_POOL_ID", default="")
COGNITO_CLIENT_ID = env.str("COGNITO_CLIENT_ID", default="")
COGNITO_REGION = env.str("COGNITO_REGION", default=AWS_REGION)
IDENTITY_TOKEN_LIFETIME_SECONDS = env.int("IDENTITY_TOKEN_LIFETIME_SECONDS", default=3600)
IDENTITY_USER_RETENTION_DAYS = env.int("IDENTITY_USER_RETENTION_DAYS", default=30)
IDENTITY_LOCAL_ISSUER = env.str("IDENTITY_LOCAL_ISSUER", default="http://127.0.0.1:8000/local-identity")
IDENTITY_LOCAL_CLIENT_ID = env.str("IDENTITY_LOCAL_CLIENT_ID", default="portal-local")
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out username or client before any password check
    "django.contrib.auth.backends.ModelBackend",
    "tenants.identity.auth_backends.TenantUserBackend",
]
# Password guessing (django-axes): LOGIN_FAILURE_LIMIT failed sign-ins lock that username out, and separately
# that client IP, for LOGIN_COOLOFF_MINUTES after the last failure: the sign-in pages, the admin's and HTTP
# Basic on the API. Failures are counted in the database (shared by every process and host, unlike the
# default per-process cache) and shown in the admin. See tenants/identity/lockout.py.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_COOLOFF_MINUTES = env.int("LOGIN_COOLOFF_MINUTES", default=15)
if LOGIN_FAILURE_LIMIT < 1 or LOGIN_COOLOFF_MINUTES < 1:
    raise ImproperlyConfigured("LOGIN_FAILURE_LIMIT and LOGIN_COOLOFF_MINUTES must be at least 1")
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: per user AND per client
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_USERNAME_CALLABLE = "tenants.identity.lockout.username_key"
AXES_CLIENT_IP_CALLABLE = "tenants.identity.lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "tenants.identity.lockout.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # failures are what is kept; no table of every successful sign-in
AXES_VERBOSE = False  # no start-up banner on every command's stderr; tenants.identity.lockout logs each lockout
SIGNUP_RATE_LIMIT = env.str("SIGNUP_RATE_LIMIT", default="5/hour")
SIGNUP_CODE_TTL_MINUTES = env.int("SIGNUP_CODE_TTL_MINUTES", default=30)
METERED_API_BASE_URL = env.str("METERED_API_BASE_URL", default="http://127.0.0.1:8000/demo-api")
# The CDK CLI for pipeline deployments: empty means infra/node_modules/.bin/cdk (`make cdk`), else `cdk` on PATH.
CDK_CLI = env.str("CDK_CLI", default="")
# The signup rate limit counters: process memory by default, Redis (redis://host:6379/2) in production.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
# The provider dashboard keeps its usage figures until the next sync, at most this long (0: never).
DASHBOARD_CACHE_SECONDS = env.int("DASHBOARD_CACHE_SECONDS", default=300)

# Billing.
BILLING_GRACE_PERIOD_MINUTES = env.int("BILLING_GRACE_PERIOD_MINUTES", default=60)
INVOICE_NUMBER_PREFIX = env.str("INVOICE_NUMBER_PREFIX", default="INV")
# AWS Marketplace (docs/marketplace.md): the product whose customers the landing accepts (empty: any), the
# region of the Marketplace Metering Service, and how usage is reported each hour.
MARKETPLACE_PRODUCT_CODE = env.str("MARKETPLACE_PRODUCT_CODE", default="")
MARKETPLACE_REGION = env.str("MARKETPLACE_REGION", default="us-east-1")
MARKETPLACE_REPORT_DELAY_MINUTES = env.int("MARKETPLACE_REPORT_DELAY_MINUTES", default=60)
MARKETPLACE_MAX_ATTEMPTS = env.int("MARKETPLACE_MAX_ATTEMPTS", default=5)
CREDIT_NOTE_NUMBER_PREFIX = env.str("CREDIT_NOTE_NUMBER_PREFIX", default="CN")
INVOICE_PAYMENT_TERMS_DAYS = env.int("INVOICE_PAYMENT_TERMS_DAYS", default=30)  # due date = issue date + this
# A tenant's downgrade waits for staff approval in the admin (docs/plans.md, "Changing plan").
SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL = env.bool("SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL", default=False)
# Payment reminders of unpaid invoices, in days from the due date (negative: before it), sent daily by the beat.
INVOICE_REMINDER_DAYS = [int(day) for day in env.list("INVOICE_REMINDER_DAYS", default=["-3", "1", "7", "14", "30"])]
PRICING_CUSTOM_RULES = {
    "capped_per_unit": "metering.pricing.rules.capped_per_unit",
    **env.dict("PRICING_CUSTOM_RULES", default={}),
}

# The REST API.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "COERCE_DECIMAL_TO_STRING": True,
    "DATETIME_FORMAT": "iso-8601",
    "EXCEPTION_HANDLER": "portal.errors.api_exception_handler",
    # A browser gets the browsable API on every endpoint, an unknown ?format= a 406, JSON nested too deep a 400.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "metering.api.renderers.BrowsableAPIRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "metering.api.renderers.ContentNegotiation",
    "DEFAULT_PARSER_CLASSES": [
        "portal.jsoninput.JSONParser", "rest_framework.parsers.FormParser", "rest_framework.parsers.MultiPartParser",
    ],
}
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="1000/minute")
# Seconds a process keeps an API key it found live: a revocation reaches every process within this.
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=5.0)
API_MAX_RANGE_DAYS = env.int("API_MAX_RANGE_DAYS", default=400)
SPECTACULAR_SETTINGS = {
    "TITLE": "Metering portal API",
    "DESCRIPTION": "Usage, invoices and projected bills for the provider and its tenants.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "PREPROCESSING_HOOKS": ["metering.api.schema.only_api_v1"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",  # Swagger UI served from the portal's static files, no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TenantStatusEnum": "tenants.models.TenantStatus",
        "InvoiceStatusEnum": "metering.models.InvoiceStatus",
        "SubscriptionStatusEnum": "tenants.models.SubscriptionStatus",
        "SubscriptionRequestStatusEnum": "tenants.models.SubscriptionRequestStatus",
    },
}

if PRODUCTION:
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # Behind a TLS-terminating proxy (a load balancer), the proxy's X-Forwarded-Proto says the request was
    # HTTPS; the proxy must set it (overwriting the client's). Empty when the portal terminates TLS itself.
    _proxy_ssl_header = env.str("DJANGO_SECURE_PROXY_SSL_HEADER", default="X-Forwarded-Proto")
    SECURE_PROXY_SSL_HEADER = (
        ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
    )
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe the health check over plain HTTP
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # pyathena logs each failed call with a traceback before raising it; the lake reports the error it
    # raises (one line, on the run), so only pyathena's critical messages are kept.
    "loggers": {"pyathena": {"level": "CRITICAL"}},
}

# Production refuses what is unsafe, every problem listed at once with its fix (portal/production.py).
# The embedded parts are refused too unless PORTAL_ALLOW_EMBEDDED=true, which the portal.W001 check
# then reports on every `manage.py check`, `migrate` and `runserver`.
PORTAL_ALLOW_EMBEDDED = env.bool("PORTAL_ALLOW_EMBEDDED", default=False)
if PRODUCTION:
    _problems = production.unsafe_settings(secret_key=SECRET_KEY, allowed_hosts=ALLOWED_HOSTS, debug=DEBUG)
    _embedded = production.embedded_parts(
        database_engine=DATABASES["default"]["ENGINE"], broker_url=CELERY_BROKER_URL,
        result_backend=CELERY_RESULT_BACKEND, cache_backend=CACHES["default"]["BACKEND"],
        email_backend=EMAIL_CONFIG["EMAIL_BACKEND"],
    )
    if _problems or (_embedded and not PORTAL_ALLOW_EMBEDDED):
        raise ImproperlyConfigured(
            production.refusal_message(_problems, [] if PORTAL_ALLOW_EMBEDDED else _embedded)
        )

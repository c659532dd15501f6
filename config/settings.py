"""brokerlink settings: every value comes from the environment (12-factor).

`DJANGO_ENV=production` switches to production mode, which refuses to start without its
secrets and turns on the hardening `manage.py check --deploy` asks for. Development reads a
local `.env` (written by `make run`, never committed).
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from dotenv import load_dotenv

from config.env import env_bool, env_int, env_list, env_required, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("BROKERLINK_VAR_DIR", str(BASE_DIR / "var")))

# The process environment wins over .env, so CI and operators can override anything.
load_dotenv(BASE_DIR / ".env", override=False)

DJANGO_ENV = env_str("DJANGO_ENV", "development")
PRODUCTION = DJANGO_ENV == "production"

SECRET_KEY = env_required(
    "DJANGO_SECRET_KEY", production=PRODUCTION, dev_default="dev-only-insecure-secret-key-change-me"
)
# Comma-separated `key_id:base64(32 bytes)`; the first encrypts, all decrypt.
# Not defaulted: without it the vault fails closed with an error naming the variable.
TOKEN_ENCRYPTION_KEYS = env_required("TOKEN_ENCRYPTION_KEYS", production=PRODUCTION)

DEBUG = env_bool("DJANGO_DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,[::1],testserver")
if PRODUCTION and not ALLOWED_HOSTS:
    env_required("DJANGO_ALLOWED_HOSTS", production=True)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
PORT = env_int("PORT", 8000)
# The address users reach the app at; used to build OAuth redirect URIs outside a request.
SITE_URL = env_str("SITE_URL", f"http://127.0.0.1:{PORT}").rstrip("/")
if PRODUCTION:
    # OAuth redirect URIs and links in emails are built from it: production must say, over https.
    SITE_URL = env_required("SITE_URL", production=True).rstrip("/")
    if not SITE_URL.startswith("https://"):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"SITE_URL must be an https:// URL in production, got {SITE_URL!r}")

INSTALLED_APPS = [
    "accounts.apps.BrokerlinkAdminConfig",  # django.contrib.admin behind allauth and a second factor
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # the {% when %} tag (preferences) uses its naturaltime and translations
    "django_htmx",
    "csp",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "accounts",
    "preferences",
    "vault",
    "brokers",
    "sandbox",
    "connections",
    "engine",
    "pages",
    "partners",
    "ops",
    "api",
    # django-ninja: in INSTALLED_APPS so its docs page uses the bundled Swagger UI files (no CDN).
    "ninja",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "preferences.timezones.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Under DEBUG too, a link to nowhere shows the styled 404 (inside the CSP middleware: its header applies).
    "config.errorpages.StyledNotFoundMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.SessionHardeningMiddleware",
    # htmx requests after the session ended: "You were signed out", not a login page in a card.
    "pages.middleware.HtmxSignedOutMiddleware",
    # Last, so it sees the view's exception first: no free database connection -> 503 "busy".
    "ops.busy.DatabaseBusyMiddleware",
]
# First, so every log line of a request (including the security middleware's) carries its id.
MIDDLEWARE.insert(0, "ops.logging.RequestIdMiddleware")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
    }
]

# --- Database -------------------------------------------------------------------------
# SQLite is the embedded default so a fresh laptop needs no server; PostgreSQL in production
# and in the tests. conn_health_checks lets a PostgreSQL restart pass without error pages.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'brokerlink.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0), conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # web, worker and beat share one file: WAL and a busy timeout keep writers from failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# A connection pool per process (Django's psycopg pool), on when DB_POOL_MAX_SIZE > 0: the
# Procfile's web processes set it, so a web process never holds more than that many
# PostgreSQL connections however many requests and open pages it serves; a request that
# finds them all busy waits up to DB_POOL_TIMEOUT seconds, then gets a 503 "busy" page.
# Workers and beat run without it (their budget: see docs/operations.md, Scaling).
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 0)
if DB_POOL_MAX_SIZE > 0 and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections, not Django
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(env_int("DB_POOL_MIN_SIZE", 2), DB_POOL_MAX_SIZE),
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": float(env_str("DB_POOL_TIMEOUT", "10")),
        "max_idle": 300,
    }
# Lanes (reused threads) per web process for the most viewed page reads (common/threadlanes.py).
WEB_PAGE_THREADS = env_int("WEB_PAGE_THREADS", 2)
WEB_PAGE_WAIT_SECONDS = float(env_str("DB_POOL_TIMEOUT", "10"))
# Behind PgBouncer in transaction mode (instead of the pool above).
if env_bool("DB_DISABLE_SERVER_SIDE_CURSORS", False):
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, Celery -----------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            # Tolerant: while Redis is down, each process uses its own memory instead (ops/cache.py), not 500s.
            "BACKEND": "ops.cache.TolerantRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX"),
            # Short timeouts: a Redis outage must degrade pages, not hang them.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    # Shared by web, worker and beat processes without a server.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX"),
        }
    }

# Embedded broker: kombu's filesystem transport, a folder of message files. It needs no
# server and no extra package; it has no broadcast, so worker liveness is read from the
# heartbeat rows workers write (ops.WorkerHeartbeat), not from `celery inspect ping`.
CELERY_EMBEDDED_BROKER_DIR = VAR_DIR / "celery-broker"
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"socket_timeout": 5, "socket_connect_timeout": 5, "visibility_timeout": 3600}
    if REDIS_URL
    else {
        "data_folder_in": str(CELERY_EMBEDDED_BROKER_DIR),
        "data_folder_out": str(CELERY_EMBEDDED_BROKER_DIR),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        # kombu's default is ./control in the working directory.
        "control_folder": str(VAR_DIR / "celery-control"),
        "store_processed": False,
    }
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Tests give each run its own queue so parallel runs on one Redis never share work.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULER = "ops.beat.RecordingScheduler"
CELERY_TIMEZONE = "UTC"

# --- Auth (django-allauth, email as the login) ---------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
# Mandatory in production: an unverified address can receive nobody's alerts, and allauth's
# sign-up hides whether an address is registered only when verification is mandatory.
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "mandatory" if PRODUCTION else "optional")
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None
# allauth's emails: "[brokerlink] Reset your password", greetings from templates/account/email/.
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[brokerlink] "
# Emails as brokerlink; failed-login limit keyed on account and address, held while the cache is down.
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "connections:dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Second factors (allauth.mfa), required for staff by the admin site and operator pages.
MFA_SUPPORTED_TYPES = ["totp", "webauthn", "recovery_codes"]
MFA_TOTP_ISSUER = "brokerlink"
# Security keys need a secure origin; development serves http://127.0.0.1.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = not PRODUCTION

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "brokerlink <noreply@brokerlink.local>")
# Operators (Django's ADMINS): mailed when a service key is created or widened, when a revoked
# key is used, and when a webhook endpoint is disabled. Comma-separated addresses.
ADMINS = [(address, address) for address in env_list("BROKERLINK_OPERATOR_EMAILS")]
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
EMAIL_SUBJECT_PREFIX = "[brokerlink] "

# --- i18n, static ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Dates and times read the same on every page and in admin: 2026-12-02 04:29 CET.
FORMAT_MODULE_PATH = ["config.formats"]
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "config.staticstorage.ManifestStaticStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Open live pages (event streams) one web process serves at once, in all and per user.
LIVE_MAX_STREAMS_PER_PROCESS = env_int("LIVE_MAX_STREAMS_PER_PROCESS", 4000)
LIVE_MAX_STREAMS_PER_USER = env_int("LIVE_MAX_STREAMS_PER_USER", 20)
# How often an open page asks for changes while its event stream is down (never while it is open).
LIVE_POLL_SECONDS = float(env_str("LIVE_POLL_SECONDS", "5"))
# A stream ends (and the page opens a new one) after this long: bounds how long it holds a
# worker and picks up a new deployment.
LIVE_STREAM_MAX_SECONDS = float(env_str("LIVE_STREAM_MAX_SECONDS", "300"))

# --- brokerlink --------------------------------------------------------------------------
BROKERS_FILE = env_str("BROKERS_FILE")
HEARTBEAT_INTERVAL_SECONDS = env_int("HEARTBEAT_INTERVAL_SECONDS", 60)
# Where brokerlink reaches the sandbox broker: mounted in this app by default, or a
# standalone sandbox server (tests and benchmarks point this at their own port).
SANDBOX_BASE_URL = env_str("SANDBOX_BASE_URL", f"{SITE_URL}/sandbox").rstrip("/")
SANDBOX_CONTROL_TOKEN = env_str("SANDBOX_CONTROL_TOKEN")
# How often a Sandbox Broker connection is checked (seconds). 60 like a real broker; demos and
# tests of token rotation shorten it together with HEARTBEAT_INTERVAL_SECONDS.
SANDBOX_HEARTBEAT_INTERVAL_SECONDS = env_int("SANDBOX_HEARTBEAT_INTERVAL_SECONDS", 60)
# The mounted sandbox broker (and its catalog entry). A pretend broker has no place on a
# production site unless the operator wants the demo there, so production leaves it off.
SANDBOX_ENABLED = env_bool("SANDBOX_ENABLED", default=not PRODUCTION)
# Real brokers whose BrokerApp is served by the sandbox emulating that broker ("*" = all):
# how the demo and the contract suite exercise every profile with no real broker reachable.
SANDBOX_EMULATE_BROKERS = env_list("SANDBOX_EMULATE_BROKERS")
# Development switch of the outbound-URL policy (outbound.policy): plain http to a loopback
# host (the sandbox on 127.0.0.1). Off in production, where every URL brokerlink calls must be
# https to a public address.
OUTBOUND_ALLOW_LOOPBACK_HTTP = env_bool("OUTBOUND_ALLOW_LOOPBACK_HTTP", default=not PRODUCTION)
# Personal notification channels (preferences.channels): how many one person may keep, and
# how often they may press "Send me a test" (each test is sent by a worker, not the web).
NOTIFICATION_CHANNELS_MAX = env_int("NOTIFICATION_CHANNELS_MAX", 10)
NOTIFICATION_TEST_COOLDOWN_SECONDS = env_int("NOTIFICATION_TEST_COOLDOWN_SECONDS", 60)
# Private test networks treated like loopback while that switch is on (the multi-host tests'
# network namespaces); nothing when it is off.
OUTBOUND_DEVELOPMENT_NETWORKS = env_list("OUTBOUND_DEVELOPMENT_NETWORKS")
BROKER_CONNECT_TIMEOUT_SECONDS = float(env_str("BROKER_CONNECT_TIMEOUT_SECONDS", "5"))
BROKER_READ_TIMEOUT_SECONDS = float(env_str("BROKER_READ_TIMEOUT_SECONDS", "10"))
# /metrics and POST /health/check/ accept `Authorization: Bearer <token>` (or a staff session).
METRICS_TOKEN = env_str("METRICS_TOKEN")
HEALTH_CHECK_TOKEN = env_str("HEALTH_CHECK_TOKEN")
HEALTH_CHECK_TIMEOUT_SECONDS = float(env_str("HEALTH_CHECK_TIMEOUT_SECONDS", "2"))
# A worker or beat not seen for this long is reported down.
HEALTH_FRESH_SECONDS = env_int("HEALTH_FRESH_SECONDS", 60)
# /health/ready/ reuses its last report this long (per process); POST /health/check/ bypasses it.
HEALTH_CACHE_SECONDS = float(env_str("HEALTH_CACHE_SECONDS", "5"))
METRICS_WINDOW_SECONDS = env_int("METRICS_WINDOW_SECONDS", 3600)
# A person's "Check now" on one connection at most once per this many seconds (shared broker quota).
CHECK_NOW_COOLDOWN_SECONDS = env_int("CHECK_NOW_COOLDOWN_SECONDS", 10)

# --- Security -------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_ENGINE = "django.contrib.sessions.backends.db"  # Django's default: sessions survive a cache flush
# Idle timeout (renewed at most once a minute by a request) and an absolute lifetime
# (accounts.middleware).
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_SECONDS", 30 * 60)
SESSION_ABSOLUTE_SECONDS = env_int("SESSION_ABSOLUTE_SECONDS", 12 * 3600)
LOGIN_URL_PATH = "/accounts/login/"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Trust X-Forwarded-Proto only when a TLS-terminating proxy in front sets it (and strips any
# client-sent copy); otherwise any client could claim https.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies in front of brokerlink append to X-Forwarded-For (0: none, the socket's
# peer is the client). Read by ops.client_address (API audit, log lines) and by allauth's
# sign-in limits; see docs/configuration.md.
TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 0)
# Failed API authentications one client address may make per minute before getting 429.
API_AUTH_FAILURES_PER_MINUTE = env_int("API_AUTH_FAILURES_PER_MINUTE", 20)
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_HOPS
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # /health/ is hit over plain HTTP by load balancers inside the private network.
    SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]

# Content-Security-Policy on every response (django-csp): scripts and styles from this origin
# only, no inline script, no eval (htmx's allowEval is off in templates/_base.html), no
# plugins, no <base>, never framed. form-action is left open on purpose: "Connect" posts
# to brokerlink, which redirects the browser to the broker's authorize page.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
}

DEFAULT_EXCEPTION_REPORTER = "ops.reporting.RedactingExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "ops.reporting.RedactingReporterFilter"

# --- Logging ---------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "json" if PRODUCTION else "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "ops.logging.RedactSecretsFilter"},
        "context": {"()": "ops.logging.ContextFilter"},
    },
    "formatters": {
        "text": {
            "()": "ops.logging.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s task=%(task_id)s client=%(client)s] "
            "%(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(task_id)s %(client)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context", "redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": "INFO"},
    },
}
# Celery workers keep Django's handlers (JSON, redaction) instead of installing their own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

if not PRODUCTION:
    # Development serves static files from STATICFILES_DIRS through WhiteNoise's finders;
    # the empty STATIC_ROOT only keeps WhiteNoise from warning that it is missing.
    WHITENOISE_USE_FINDERS = True
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

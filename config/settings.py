"""Settings for the loyalty CRM: one module, every deployment knob read from the environment.

Embedded defaults (no variables set) give the local demo: a SQLite file under var/, tasks run eagerly in process.
Production sets at least DEBUG=0, SECRET_KEY, ALLOWED_HOSTS and DATABASE_URL; `manage.py check --deploy` is clean then.
"""
import tomllib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ
from django.db.utils import InterfaceError as DatabaseInterfaceError
from django.db.utils import OperationalError as DatabaseOperationalError
from django.utils.translation import gettext_lazy as _
from import_export.formats import base_formats as import_export_formats
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from members.csv_export import SPREADSHEET_SAFE_FORMATS

from .unfold import UNFOLD  # noqa: F401  (the admin's skin and sidebar)

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env (git-ignored) is read when present, so a developer need not export variables by hand.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

# The fallback key only serves the local demo and tests; `check --deploy` rejects it (security.W009).
SECRET_KEY = env("SECRET_KEY", default="django-insecure-local-demo-key-do-not-use-in-production")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Unfold must come before django.contrib.admin: it replaces the admin's templates.
    "unfold",
    "unfold.contrib.filters",
    # Unfold's skin for django-import-export: its templates must be found before import_export's own.
    "unfold.contrib.import_export",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "import_export",
    # Schedules in the database, edited in the admin (Jobs); beat reads them (CELERY_BEAT_SCHEDULER below).
    "django_celery_beat",
    # Staff roles and the audit log of staff changes (a sub-app of members, label `console`: every admin uses it).
    "members.console",
    # Domain apps, lowest layer first: campaigns -> points -> tiers -> members.
    "members",
    "tiers",
    "points",
    "campaigns",
    "campaigns.engagement",
    "campaigns.messaging",
    # Webhooks to the storefront (a sub-app of members, label `webhooks`): the apps emit through its services.
    "members.webhooks",
    # The admin login's throttle (members.staff_login; its admins in members.console.admin, superusers only).
    "axes",
]

MIDDLEWARE = [
    # First: every error under /api/ is JSON (whichever middleware answers it); bodies over the cap or nested too deep
    # are refused before anything parses them (members.api_guard).
    "members.api_guard.ApiGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- Database -----------------------------------------------------------------------------------------------------
# DATABASE_URL, e.g. postgres://user:pass@host:5432/loyalty (psycopg 3). Default: a SQLite file for the local demo.
DATA_DIR = Path(env("LOYALTY_DATA_DIR", default=str(BASE_DIR / "var")))
DATABASE_URL = env("DATABASE_URL", default="") or f"sqlite:///{DATA_DIR / 'loyalty.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # Several requests writing at once must queue, not fail with "database is locked": WAL lets readers run beside
    # the writer, IMMEDIATE takes the write lock at BEGIN (no lock upgrade deadlock), and the timeout makes a writer
    # wait for the lock instead of erroring.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services own their transactions

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The growth events' covering index (INCLUDE) serves PostgreSQL; SQLite, the local demo, builds it as a plain index.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# --- Cache --------------------------------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Without REDIS_URL the cache (rate limits, idempotency, caches) is per process; `check --deploy` refuses that with
# DEBUG off (members.checks, loyalty.E001) unless the deployment declares it runs a single process on purpose.
LOYALTY_SINGLE_PROCESS = env.bool("LOYALTY_SINGLE_PROCESS", default=False)

# --- Auth, i18n, static -------------------------------------------------------------------------------------------
# django-axes first: it refuses a locked-out login before the password is checked. The storefront API authenticates
# with API keys (members.api_auth), never through these backends, so a lockout never touches it.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# A login at /admin/login/ without ?next= lands on the dashboard (Django's default is /accounts/profile/, a 404 here).
LOGIN_REDIRECT_URL = "admin:index"
LOGIN_URL = "admin:login"
# The admin login's throttle (members.staff_login): after this many failed logins for one username from one address,
# that pair is refused for the cool-off, counted from the last failure; a successful login resets the count.
# Superusers see and lift lockouts in the admin (Settings › Login lockouts).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "members.staff_login.client_ip"
AXES_LOCKOUT_CALLABLE = "members.staff_login.lockout_response"
AXES_ENABLE_ADMIN = False  # its plain admins: members.console.admin registers them in Unfold's skin
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The default stays English; the admin's language menu (a cookie, via /i18n/setlang/) and the API's Accept-Language
# pick another. Strings live in locale/ (docs/translations.md: `make messages`, translate, commit .po and .mo).
LANGUAGE_CODE = env("LANGUAGE_CODE", default="en")
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
# Ours first; then Unfold's strings, which its package translates into no Chinese (`make messages` keeps both).
LOCALE_PATHS = [BASE_DIR / "locale", BASE_DIR / "locale" / "vendor"]
# Chinese numbers grouped by thousands (Django's zh_Hans formats group nothing): config/formats/.
FORMAT_MODULE_PATH = ["config.formats"]
TIME_ZONE = env("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (all on when DEBUG=0; each can be relaxed from the environment, e.g. behind plain-HTTP tests) -------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=True) else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Logging ------------------------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

# --- Celery -------------------------------------------------------------------------------------------------------
# Scheduled jobs (members.jobs): every run is a JobRun, unique per job and period, committed batch by batch and
# resumable, so the settings below may deliver a task more than once without anything being done twice.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
# No broker configured: run every task in process, so the local demo needs no services.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = TIME_ZONE
# Results are optional: jobs report through JobRun. Set it to read task results (e.g. the admin's re-evaluation).
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default="") or None
# Acknowledge a message when its task has finished, not when it starts: a worker that dies mid-job leaves the
# message to be delivered again, and the JobRun claim turns that redelivery into a resume, not a repeat.
CELERY_TASK_ACKS_LATE = True
# A worker child killed mid-task (OOM, hard time limit) requeues its task at once instead of marking it failed.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Each worker process reserves only the task it runs: a long job never sits on messages other workers could take.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task that hangs (a lock wait, a stuck connection) is stopped: soft limit first (the job records "failed" and
# is resumed by the next firing), then the hard limit kills it. Scheduled jobs have tighter limits
# (members.jobs.JobTask); these bound everything else (an order file imported in the background).
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=2 * 60 * 60 - 5 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=2 * 60 * 60)
# Redis redelivers a message not acknowledged within this time. It must exceed the longest time limit (or a running
# task would be handed to a second worker) and every countdown or ETA a task is sent with (retries wait at most
# 10 minutes); tests/jobs checks both.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3 * 60 * 60)}
# Transient errors (a dropped database connection, a deadlock victim, SQLite busy, the broker restarting) retry
# with exponential backoff and jitter, at most 5 times and 10 minutes apart; a retried job resumes where it stopped.
CELERY_TASK_ANNOTATIONS = {
    "*": {
        "autoretry_for": (
            DatabaseOperationalError, DatabaseInterfaceError, KombuOperationalError, RedisConnectionError,
            ConnectionError,
        ),
        "retry_backoff": 5,
        "retry_backoff_max": 10 * 60,
        "retry_jitter": True,
        "max_retries": 5,
    }
}
# A worker that loses the broker stops its late-acknowledged tasks: they are redelivered anyway, and the JobRun lease
# lets the redelivery take over (also silences Celery 5's warning about the coming default).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Schedules live in the database (django-celery-beat, edited in the admin under Jobs), in the programme's time
# zone. The scheduler holds a Redis lock while it runs, so a second beat started by mistake sends nothing
# (members.beat; docs/deployment.md).
CELERY_BEAT_SCHEDULER = "members.beat:SingleBeatScheduler"
CELERY_BEAT_LOCK_URL = env("CELERY_BEAT_LOCK_URL", default="") or REDIS_URL or CELERY_BROKER_URL
# The lock expires this long after the beat holding it stops refreshing it (it refreshes every few seconds); then a
# standby beat takes over.
CELERY_BEAT_LOCK_TTL = env.int("CELERY_BEAT_LOCK_TTL", default=60)
# Record each sending in the database at once, so a standby beat that takes over does not send it again.
CELERY_BEAT_SYNC_EVERY = 1
DJANGO_CELERY_BEAT_TZ_AWARE = True

# --- API ----------------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["members.api_auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["members.api_auth.HasApiKeyScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "members.api_schema.ApiAutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["members.api_auth.ApiKeyRateThrottle"],
    "EXCEPTION_HANDLER": "members.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}
API_KEY_CUSTOM_HEADER = None  # keys come in "Authorization: Api-Key <key>"
# Requests per minute per API key unless the key sets its own (ApiKey.rate_limit_per_minute); 0 = unlimited.
LOYALTY_API_RATE_LIMIT_PER_MINUTE = env.int("LOYALTY_API_RATE_LIMIT_PER_MINUTE", default=600)
# How long an Idempotency-Key is remembered, and how long a repeat waits for the first request still running (then
# 409 with Retry-After: a short wait, so a retry never holds a worker thread for long).
LOYALTY_IDEMPOTENCY_TTL_HOURS = env.int("LOYALTY_IDEMPOTENCY_TTL_HOURS", default=24)
LOYALTY_IDEMPOTENCY_WAIT_SECONDS = env.float("LOYALTY_IDEMPOTENCY_WAIT_SECONDS", default=1)
# A request holding a key longer than this without an answer is taken to have died (its worker killed): the next
# request with the key takes the claim over. Keep it above the web server's request timeout (gunicorn's: 30 s).
LOYALTY_IDEMPOTENCY_LEASE_SECONDS = env.int("LOYALTY_IDEMPOTENCY_LEASE_SECONDS", default=60)
# The largest request body the API reads (bytes; Django's DATA_UPLOAD_MAX_MEMORY_SIZE, if lower, wins): beyond it 413
# request_too_large, before anything parses it (members.api_guard). 1 MiB holds an order with thousands of lines.
LOYALTY_API_MAX_BODY_BYTES = env.int("LOYALTY_API_MAX_BODY_BYTES", default=1024 * 1024)
# How deep arrays and objects may nest in a JSON body: deeper is 400 nesting_too_deep, found without parsing. Keep it
# well below Python's recursion limit (1000), which the JSON parser and the serializers run into.
LOYALTY_API_MAX_JSON_DEPTH = env.int("LOYALTY_API_MAX_JSON_DEPTH", default=32)

SPECTACULAR_SETTINGS = {
    "TITLE": "Loyalty CRM storefront API",
    # The quick start shown atop /api/docs/ (markdown); docs/api.md says more.
    "DESCRIPTION": """Members, orders, points, tiers and engagement for the storefront.

## Quick start

**Authentication.** Send `Authorization: Api-Key <key>` with every request; staff create keys with
`manage.py create_api_key "web shop" --scopes read members orders redemptions` or in the admin (shown once). A key
holds scopes: `read`, `members`, `orders`, `redemptions`, `engagement`, `privacy`. No key, another scheme (`Bearer`) or
a bad key is 401; a key without the scope an operation needs is 403 `permission_denied`, naming the scope.

**Idempotency keys.** Every `POST` takes an `Idempotency-Key` header (1 to 255 visible ASCII characters, a UUID will
do; required on `POST /redemptions/`). A retry with the same key and body answers the stored response with
`Idempotent-Replayed: true` and does nothing twice; the same key with another body is 422 `idempotency_key_reused`.
Keys are kept 24 hours.

**Errors.** Every error has one body: `{"code": "...", "detail": "...", "errors": {"field": ["..."]}}`. Branch on
`code` (stable, listed per operation and status below); `detail` is for people, in the request's `Accept-Language`;
`errors` names the fields at fault (400 `invalid` only). A 500 carries an `error_id` to quote.

**Rate limits.** Each key may make 600 requests a minute unless its own limit says otherwise; beyond that 429
`throttled` with `Retry-After` (seconds).

**Pagination.** Lists of unbounded length (a member's transactions and coupons) are cursor pages:
`{"next": url, "previous": url, "results": [...]}`; follow `next` until it is null. `page_size` is 50 by default,
at most 200.""",
    # One tag per area; every operation has exactly one (tests/api/test_openapi.py).
    "TAGS": [
        {"name": "index", "description": "The API's endpoints and the schema's address; any valid key reads it."},
        {"name": "members", "description": "Register members and read a member: tier, balances, what the next tier needs."},
        {"name": "orders", "description": "Record orders and refunds: points, growth value and tiers follow."},
        {"name": "points", "description": "The points ledger, the rewards catalogue, redemptions, cash deduction quotes."},
        {"name": "tiers", "description": "The tier ladder: thresholds and benefits."},
        {"name": "engagement", "description": "Coupons, daily check-ins, rewarded events, badges and the leaderboard."},
        {"name": "privacy", "description": "Export everything held about a member; anonymise a member."},
    ],
    # One version number for the package and the API: pyproject.toml's [project] version (CHANGELOG.md's policy).
    "VERSION": tomllib.loads((BASE_DIR / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"],
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI and Redoc come from the sidecar package: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- The loyalty programme ----------------------------------------------------------------------------------------
# The programme's currency: orders in another currency are refused rather than silently mixed into spend.
LOYALTY_CURRENCY = env("LOYALTY_CURRENCY", default="CNY")
# The region a phone number without a country code is read in (ISO 3166 code): phones are stored in E.164.
LOYALTY_PHONE_REGION = env("LOYALTY_PHONE_REGION", default="CN")
# Base earning rate before the tier multiplier: points per currency unit of the paid amount (rounded down).
LOYALTY_POINTS_PER_CURRENCY_UNIT = Decimal(env("LOYALTY_POINTS_PER_CURRENCY_UNIT", default="1"))
# The largest amount one order may have (API: 400, import: a row error). The default leaves room for ten thousand such
# orders in a member's lifetime spend; raise it for a currency of small units. At most 9999999999.99 (the column).
LOYALTY_ORDER_AMOUNT_MAX = Decimal(env("LOYALTY_ORDER_AMOUNT_MAX", default="99999999.99"))
# Growth value per currency unit, interaction weights, daily caps, excluded categories, the qualification window,
# grace and downgrade steps are the tier rules, edited by staff in the admin (tiers.models), not settings.
# Expiry, pending days, returns policy, cash deduction and the value of a point are the points policy, edited by
# staff in the admin (points.models.PointsPolicy), not settings.

# What happens when an order is recorded, in order. Each handler receives the OrderRecorded event inside the
# order's transaction, with the member row locked. Points come first so an order earns at the tier the member
# held when placing it; the upgrade it causes applies from the next order on.
LOYALTY_ORDER_HANDLERS = [
    # A coupon on the order is checked and used first: a refused coupon refuses the order before anything is credited.
    "campaigns.engagement.services.coupon_on_order",
    "points.services.points_on_order",
    "tiers.services.growth_on_order",
    "tiers.services.tier_on_order",
    # The referee's first paid order rewards both sides (the referrer in its own transaction, after the commit).
    "campaigns.engagement.services.referral_on_order",
    # The gift of a running tier-up campaign for the upgrade this order just caused.
    "campaigns.services.campaign_tier_up_on_order",
    # Campaign extra points on the order's points (the stacking rule: campaigns.services.handlers docstring). Late in the
    # list on purpose: a budgeted campaign's row stays locked until the order commits, so orders queue on it briefly.
    "campaigns.services.campaign_multiplier_on_order",
    # Last: badges for orders, spend and the tier just reached.
    "campaigns.engagement.services.badges_on_order",
    # A recent order makes a dormant member active at once (scores wait for the RFM refresh).
    "members.rfm.activity_on_order",
]
# What happens when (part of) an order is refunded, in order, inside the refund's transaction: points used on the
# order come back before the earned points are clawed back, so they can cover the clawback instead of debt.
LOYALTY_REFUND_HANDLERS = [
    "points.services.points_on_refund",
    # The refunded share of campaign extra points on the order.
    "campaigns.services.campaign_clawback_on_refund",
    "tiers.services.growth_on_refund",
    # The referral rewards of a qualifying first order refunded below the referral rules' minimum: taken back from
    # both sides (the referrer in its own transaction, after the commit).
    "campaigns.engagement.services.referral_on_refund",
]
# What happens when a member registers (after the row exists, same transaction).
LOYALTY_MEMBER_HANDLERS = [
    # Records the referral of a sign-up with a code; refuses a self-referral (400 referral_refused).
    "campaigns.engagement.services.referral_on_register",
    "tiers.services.tier_on_register",
    # Running welcome campaigns' rewards (after the tier, so the welcome message names it).
    "campaigns.services.campaign_welcome_on_register",
]
# Engagement hooks for the campaigns layer (e.g. queue a message), called inside the transaction that made the change
# with the member locked; a hook queues its side effects with transaction.on_commit. Badges: a
# campaigns.engagement.services.BadgeAwarded per badge a member has just earned (the award_badges backfill calls
# none). Referrals: a ReferralRewarded per rewarded side (role "referee" in the order's transaction, "referrer" in
# the referrer's own just after).
LOYALTY_BADGE_HANDLERS = []
LOYALTY_REFERRAL_HANDLERS = [
    # Running referral campaigns' rewards and messages, to each rewarded side.
    "campaigns.services.campaign_referral_on_reward",
]
# A campaigns.engagement.referral_guards.ReferralReversed per side whose referral reward was taken back (the referee
# in the refund's transaction, the referrer in its own just after).
LOYALTY_REFERRAL_REVERSAL_HANDLERS = [
    # The referral campaigns' points for that side taken back too, an unused coupon revoked.
    "campaigns.services.campaign_referral_on_reversal",
]
# The leaderboard (GET /api/v1/leaderboard/) is the same for every visitor: it is served from the cache this long.
LOYALTY_LEADERBOARD_CACHE_SECONDS = env.int("LOYALTY_LEADERBOARD_CACHE_SECONDS", default=60)
# The admin dashboard's figures are kept this long (campaigns.dashboard); 0 computes them on every view.
LOYALTY_DASHBOARD_CACHE_SECONDS = env.int("LOYALTY_DASHBOARD_CACHE_SECONDS", default=600)
# What happens when a member's profile is created or updated (same transaction, member locked).
LOYALTY_PROFILE_HANDLERS = [
    "tiers.services.growth_on_profile",
]

# What the backfill after an order import does for each batch of the members it touched, in order, after their
# purchase aggregates (members.importing.orders). Each handler receives an ImportBackfill with the members locked.
# Set-based and idempotent by the live path's keys; none of them sends a message.
LOYALTY_IMPORT_BACKFILL_HANDLERS = [
    "tiers.importing.growth_backfill",
    "points.importing.points_backfill",
    "tiers.importing.tiers_backfill",
]
# Member activity (members.rfm): no order for this many days makes a member dormant, for the second many a churn
# risk (dormant members in the RFM segments "at risk" and "can't lose them" are a churn risk from the first day).
LOYALTY_DORMANT_DAYS = env.int("LOYALTY_DORMANT_DAYS", default=30)
LOYALTY_CHURN_RISK_DAYS = env.int("LOYALTY_CHURN_RISK_DAYS", default=90)
# Above this many rows the admin's import hands the file to the import_orders command's engine in a background task
# (or, without a broker, tells staff to use the command) instead of holding the request.
LOYALTY_ADMIN_IMPORT_MAX_ROWS = env.int("LOYALTY_ADMIN_IMPORT_MAX_ROWS", default=2000)

# The member page of the admin (members.admin.MemberAdmin) is assembled from these sections, in this order, one per
# app above members: each adds its history tables, list actions with their permission checks, and read-only panels
# (members.admin.member_page.MemberPageSection). No app patches MemberAdmin; INSTALLED_APPS order does not matter.
LOYALTY_MEMBER_PAGE_SECTIONS = [
    "tiers.admin.member_page_section",
    "points.admin.member_page_section",
    "campaigns.admin.member_page_section",
    "campaigns.engagement.admin.member_page_section",
    "campaigns.messaging.admin.member_page_section",
]
# The member detail (API and member 360) is assembled from these sections, one per app above members, so the
# members app shows tiers and points without importing them.
LOYALTY_MEMBER_DETAIL_SECTIONS = [
    "tiers.selectors.member_detail_tier_section",
    "points.selectors.member_detail_points_section",
]

# Privacy (members.privacy): a member's data export is assembled from these sections, one function per higher app
# returning (section name, data); anonymisation calls the anonymisers, each erasing what its app copied of the person.
LOYALTY_PRIVACY_SECTIONS = [
    "tiers.privacy.tier_privacy_section",
    "points.privacy.points_privacy_section",
    "campaigns.engagement.privacy.engagement_privacy_section",
    "campaigns.messaging.privacy.messages_privacy_section",
]
LOYALTY_PRIVACY_ANONYMISERS = [
    "campaigns.messaging.privacy.messages_anonymise",
]

# --- Operator roles and four eyes (members.console.roles, points.approvals) ----------------------------------------------
# A manual points adjustment that takes a member's adjustments of the local day above this many points (absolute
# values, credits and debits both, pending requests included) waits for a second staff member's approval
# (Points › Adjustment requests) before it reaches the ledger: splitting does not get round it.
LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD = env.int("LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD", default=1000)
# The most staff with only "small adjustments" (Support) may adjust one member by, per action and per local day
# (absolute values added up); beyond it the adjustment is refused.
LOYALTY_SUPPORT_ADJUSTMENT_LIMIT = env.int("LOYALTY_SUPPORT_ADJUSTMENT_LIMIT", default=500)

# --- Messages (campaigns.messaging) -------------------------------------------------------------------------------
# Email goes through Django's backend: EMAIL_URL, e.g. smtp+tls://user:password@smtp.example.com:587. Unset, emails
# are written to the console (the local demo), so production must set it.
globals().update({k: v for k, v in env.email_url("EMAIL_URL", default="consolemail://").items() if v is not None})
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="loyalty@localhost")
# The class that sends each channel (campaigns.messaging.channels): an SMS provider is a subclass of SmsChannel.
LOYALTY_MESSAGE_CHANNELS = {
    "email": env("LOYALTY_EMAIL_CHANNEL", default="campaigns.messaging.channels.EmailChannel"),
    "sms": env("LOYALTY_SMS_CHANNEL", default="campaigns.messaging.channels.LoggingSmsChannel"),
}
# Nothing is sent between these local times (TIME_ZONE); a message queued then waits for the end. Empty: no quiet
# hours. e.g. LOYALTY_QUIET_HOURS=22:00,08:00
LOYALTY_QUIET_HOURS = tuple(env.list("LOYALTY_QUIET_HOURS", default=["21:00", "09:00"]))
# A transient send error is retried after 1, 2, 4... minutes (at most an hour apart), this many attempts in all.
LOYALTY_MESSAGE_MAX_ATTEMPTS = env.int("LOYALTY_MESSAGE_MAX_ATTEMPTS", default=5)
LOYALTY_MESSAGE_RETRY_BACKOFF = 60
LOYALTY_MESSAGE_RETRY_BACKOFF_MAX = 60 * 60
# A message still "sending" after this many seconds lost its worker: it is sent again.
LOYALTY_MESSAGE_SENDING_TIMEOUT = 10 * 60
# Points-expiry reminder: members whose points expire within this many days, once per member and expiry month.
LOYALTY_EXPIRY_REMINDER_DAYS = env.int("LOYALTY_EXPIRY_REMINDER_DAYS", default=30)
# Tier-up congratulations go out for upgrades at most this many days old (never for the history before).
LOYALTY_TIER_UP_MESSAGE_WITHIN_DAYS = 3

# --- Webhooks (webhooks) ------------------------------------------------------------------------------------------
# Seconds to wait for the storefront's endpoint (connect, then each read) before the attempt counts as failed.
LOYALTY_WEBHOOK_TIMEOUT = env.float("LOYALTY_WEBHOOK_TIMEOUT", default=5.0)
# Attempts per delivery before it is given up (failed; staff may redeliver it from the admin).
LOYALTY_WEBHOOK_MAX_ATTEMPTS = env.int("LOYALTY_WEBHOOK_MAX_ATTEMPTS", default=8)
# A failed attempt is retried after 30 s, 1, 2, 4... minutes (+ up to 10 % jitter), at most an hour apart.
LOYALTY_WEBHOOK_RETRY_BACKOFF = env.int("LOYALTY_WEBHOOK_RETRY_BACKOFF", default=30)
LOYALTY_WEBHOOK_RETRY_BACKOFF_MAX = env.int("LOYALTY_WEBHOOK_RETRY_BACKOFF_MAX", default=60 * 60)
# A delivery still "delivering" after this many seconds lost its worker: it is sent again.
LOYALTY_WEBHOOK_DELIVERING_TIMEOUT = 5 * 60
# Succeeded and failed deliveries are deleted after this many days (webhooks.purge, daily; at least the points.expiring
# window plus a month, members.webhooks.delivery.retention_days).
LOYALTY_WEBHOOK_RETENTION_DAYS = env.int("LOYALTY_WEBHOOK_RETENTION_DAYS", default=90)
# Webhook destinations are https to public addresses only (members.webhooks.destinations). Loopback (http too) is
# allowed for a receiver on a developer's machine: on with DEBUG, never in production.
LOYALTY_WEBHOOK_ALLOW_LOOPBACK = env.bool("LOYALTY_WEBHOOK_ALLOW_LOOPBACK", default=DEBUG)
# Internal networks and host names a brand sends webhooks to on purpose, e.g. "10.1.0.0/16,hooks.internal".
LOYALTY_WEBHOOK_ALLOWED_NETWORKS = env.list("LOYALTY_WEBHOOK_ALLOWED_NETWORKS", default=[])

# --- Admin import/export (django-import-export) ------------------------------------------------------------------
# The formats staff use: spreadsheets, and the CSV/TSV exports shops produce.
IMPORT_EXPORT_FORMATS = [import_export_formats.CSV, import_export_formats.TSV, import_export_formats.XLSX]
# Exports are for whoever may see the rows (members.view_member, members.view_order). Importing needs the one
# members.import_data permission, checked by the admins themselves (members.admin.ImportPermissionMixin); the code
# below only makes any other import_export admin closed to all but superusers (codename import_<model> exists nowhere).
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "import"
# A text cell opening with = + - @ (or a tab, a carriage return, their full-width forms) can run as a formula in a
# spreadsheet: every exported cell is escaped with a leading apostrophe (taken off again on import). The switch runs
# the export formats' escaping, which members.csv_export's formats replace with that rule (the library's own deletes a
# leading "=" and turns numbers into text); the same rule as every other CSV download of the product.
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True
EXPORT_FORMATS = SPREADSHEET_SAFE_FORMATS
IMPORT_EXPORT_ESCAPE_ILLEGAL_CHARS_ON_EXPORT = True
IMPORT_EXPORT_SKIP_ADMIN_LOG = False
# Exports read the rows in chunks of this many (one query each) rather than the library's 100.
IMPORT_EXPORT_CHUNK_SIZE = 2000

# --- Admin (django-unfold) ----------------------------------------------------------------------------------------
# UNFOLD, the skin and the sidebar of the operator console, is in config/unfold.py (imported at the top).

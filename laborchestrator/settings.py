"""Lab Orchestrator settings.

Every setting comes from the environment, with defaults that are safe for development:
check out the code, run `make run`, and it works with SQLite and the embedded local cluster.
Production (`LABORCHESTRATOR_PRODUCTION=1`) is refused by a system check while DEBUG,
SECRET_KEY or ALLOWED_HOSTS are unsafe (see laborchestrator/checks.py).
"""

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime data of a development checkout (SQLite file, media, generated dev secret); never committed.
VAR_DIR = Path(os.getenv("LABORCHESTRATOR_VAR_DIR", BASE_DIR / "var"))


def envbool(name: str, default: str) -> bool:
    return os.getenv(name, default).strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    return int(os.getenv(name, str(default)))


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def envjson(name: str, default: str) -> Any:
    """A JSON value (e.g. a list of objects) from the environment; a clear error if it is not JSON."""
    text = os.getenv(name, default)
    try:
        return json.loads(text)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} is not valid JSON ({error}): {text!r}") from None


def envsecret(name: str, default: str = "") -> str:
    """A secret from `NAME`, or from the file named by `NAME_FILE` (Kubernetes/Docker secrets)."""
    path = os.getenv(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.getenv(name, default)


def development_secret_key() -> str:
    """A per-checkout random key kept under var/, so sessions survive restarts without committing a key."""
    key_file = VAR_DIR / "dev-secret-key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


PRODUCTION = envbool("LABORCHESTRATOR_PRODUCTION", "0")
DEBUG = envbool("DEBUG", "0" if PRODUCTION else "1")
SECRET_KEY = envsecret("SECRET_KEY") or ("" if PRODUCTION else development_secret_key())
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
# Origins (scheme://host[:port]) allowed to frame the embeddable views, e.g. a Moodle site.
EMBED_ALLOWED_ORIGINS = envlist("EMBED_ALLOWED_ORIGINS")
SITE_URL = os.getenv("SITE_URL", "http://localhost:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "accounts",
    "labs",
    "tutorials",
    "vncproxy",
    "portal",
    "lti",
    "classes",
    "labfiles",
    "classroom",
    "laborchestrator.apps.LabOrchestratorConfig",
]

MIDDLEWARE = [
    # First, so every later log line of the request carries its id.
    "laborchestrator.logging.RequestIDMiddleware",
    # Before anything reads the Host header: the kubelet probes by pod IP (see health.py).
    "laborchestrator.health.ProbeMiddleware",
    # Before static files, the admin or any view: URLs and form posts with NUL characters are a 400.
    "laborchestrator.inputs.InputMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The app server serves no static files; WhiteNoise does, from STATIC_ROOT (collected in the image).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A rate limit refusing a page's request (a throttled sign-in) becomes a 429 page.
    "laborchestrator.ratelimit.RateLimitedMiddleware",
]

ROOT_URLCONF = "laborchestrator.urls"
WSGI_APPLICATION = "laborchestrator.wsgi.application"
ASGI_APPLICATION = "laborchestrator.asgi.application"

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
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and envbool("DATABASE_POOL", "0"):
    # Under ASGI Django advises a connection pool rather than persistent connections
    # (DATABASE_CONN_MAX_AGE must stay 0 then); without either, every request opens a new connection.
    # Off by default until the whole suite has run against it (see README, DATABASE_POOL).
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": 1, "max_size": envint("DATABASE_POOL_MAX_SIZE", 10), "timeout": 10}
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite locks the whole file, and a transaction that reads first fails at once with "database is
    # locked" when it then writes while another one writes. BEGIN IMMEDIATE takes the write lock when
    # the transaction starts, so concurrent writers queue (up to `timeout` seconds) instead.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["accounts.backends.UsernameOrEmailBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# The test suite creates many users; a deliberately slow hasher would dominate its run time.
# Never in production: laborchestrator.checks refuses it.
FAST_PASSWORD_HASHING = envbool("FAST_PASSWORD_HASHING", "0")
if FAST_PASSWORD_HASHING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.getenv("STATIC_ROOT", VAR_DIR / "staticfiles"))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.getenv("MEDIA_ROOT", VAR_DIR / "media"))
if PRODUCTION:
    # Hashed, compressed files cached forever by browsers; needs `collectstatic` (the image runs it),
    # so development and tests keep Django's default storage.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
else:
    # Files are looked up per request, so tests and `make run` need no collectstatic beforehand.
    WHITENOISE_AUTOREFRESH = True
# Tutorial uploads: images and small files referenced from Markdown.
TUTORIAL_MEDIA_MAX_BYTES = envint("TUTORIAL_MEDIA_MAX_BYTES", 10 * 1024 * 1024)
# A tutorial page or step larger than this is refused instead of stalling the renderer.
TUTORIAL_MARKDOWN_MAX_BYTES = envint("TUTORIAL_MARKDOWN_MAX_BYTES", 200 * 1024)

SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", "1" if PRODUCTION else "0")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Inside an iframe on another site (a Moodle course on its own domain) browsers send only cookies
# marked `SameSite=None; Secure`. With embedding configured and Secure cookies (TLS), the session and
# CSRF cookies are marked so; without TLS they stay Lax and an embedded page on another site offers
# a new window instead (portal/README-embed.md). A check warns about the latter (portal.W001).
EMBED_CROSS_SITE_COOKIES = bool(EMBED_ALLOWED_ORIGINS) and SESSION_COOKIE_SECURE
if EMBED_CROSS_SITE_COOKIES:
    SESSION_COOKIE_SAMESITE = "None"
    CSRF_COOKIE_SAMESITE = "None"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_TLS_PROXY", "0") else None
X_FRAME_OPTIONS = "DENY"
# Requests (and websocket handshakes) whose header fields add up to more are answered 431
# (laborchestrator/request_limits.py). 32 KiB is what ingress-nginx's default header buffers
# (4 x 8k) let through, far above any cookie or token of ours.
HTTP_MAX_HEADER_BYTES = envint("HTTP_MAX_HEADER_BYTES", 32 * 1024)

# --- Cluster -------------------------------------------------------------------------------
# Where the Kubernetes API is: a kubeconfig file (and context), or the pod's service account.
KUBECONFIG = os.getenv("KUBECONFIG", "")
KUBE_CONTEXT = os.getenv("KUBE_CONTEXT", "")
KUBE_IN_CLUSTER = envbool("KUBE_IN_CLUSTER", "0")
# Seconds a single cluster API call may take before it counts as a failure.
KUBE_REQUEST_TIMEOUT = float(os.getenv("KUBE_REQUEST_TIMEOUT", "10"))
# Seconds a namespace create that got no answer within KUBE_REQUEST_TIMEOUT is still followed: if the
# cluster creates the namespace after all (its storage call outlives the request), the failed start's
# rollback deletes it then. An API server answers within its --request-timeout (60 s by default).
KUBE_CREATE_FOLLOW_SECONDS = float(os.getenv("KUBE_CREATE_FOLLOW_SECONDS", "60"))
# The value of the `laborchestrator/installation` label on everything this installation creates in
# the cluster; it selects, adopts and deletes only objects with its own. Empty: generated at the first
# start and kept in the database (`manage.py installation_id` shows it).
INSTALLATION_ID = os.getenv("INSTALLATION_ID", "").strip()
# Seconds a failed start waits for the namespace it created to be gone before reporting failure.
LABS_ROLLBACK_WAIT_SECONDS = float(os.getenv("LABS_ROLLBACK_WAIT_SECONDS", "10"))
# An instance whose machines are not all running this long after its start is marked failed.
LABS_START_TIMEOUT_SECONDS = envint("LABS_START_TIMEOUT_SECONDS", 600)
# The process driving a start renews the instance's lease every third of this; a start whose lease ran
# out (its process was killed) is rolled back by reconcile, or by its owner's next start.
LABS_START_LEASE_SECONDS = float(os.getenv("LABS_START_LEASE_SECONDS", "30"))
# How the cluster's KubeVirt sizes each VMI's virt-launcher pod, from its KubeVirt CR's
# spec.configuration; every instance's quota is computed from them (labs/launcher_sizing.py), so they
# must match the cluster or its launcher pods are refused. Checked at start-up (labs.E001).
# developerConfiguration.cpuAllocationRatio:
KUBEVIRT_CPU_ALLOCATION_RATIO = os.getenv("KUBEVIRT_CPU_ALLOCATION_RATIO", "10")
# additionalGuestMemoryOverheadRatio (empty: not set, 1.0):
KUBEVIRT_MEMORY_OVERHEAD_RATIO = os.getenv("KUBEVIRT_MEMORY_OVERHEAD_RATIO", "")
# supportContainerResources, as JSON: [{"type": "container-disk", "resources": {"limits": {...}}}]
KUBEVIRT_SUPPORT_CONTAINER_RESOURCES = envjson("KUBEVIRT_SUPPORT_CONTAINER_RESOURCES", "[]")
# Seconds a start retries the creates refused right after its RoleBinding: a real API server's RBAC
# cache learns of a new binding a moment later.
LABS_RBAC_PROPAGATION_SECONDS = float(os.getenv("LABS_RBAC_PROPAGATION_SECONDS", "5"))
# The app's own service account: each lab namespace gets a RoleBinding granting it the lab role
# (deploy/k8s/rbac.yaml). The deployment sets both from the pod (downward API).
KUBE_SERVICE_ACCOUNT_NAMESPACE = os.getenv("KUBE_SERVICE_ACCOUNT_NAMESPACE", "laborchestrator")
KUBE_SERVICE_ACCOUNT_NAME = os.getenv("KUBE_SERVICE_ACCOUNT_NAME", "laborchestrator")
# Pod Security level lab namespaces enforce (label pod-security.kubernetes.io/enforce): KubeVirt's
# virt-launcher pods need `privileged` where the cluster's default is stricter. Empty: no label.
LABS_POD_SECURITY_ENFORCE = os.getenv("LABS_POD_SECURITY_ENFORCE", "privileged").strip()
# Where lab machines may send DNS queries (their NetworkPolicy's one egress rule beyond their own
# namespace): pods with these labels in this namespace, and/or these CIDRs, on these ports (UDP+TCP).
# Checked at start (labs.E003-E005); the README lists OpenShift's and NodeLocal DNSCache's values.
LABS_DNS_NAMESPACE = os.getenv("LABS_DNS_NAMESPACE", "kube-system").strip()
LABS_DNS_POD_LABELS = envlist("LABS_DNS_POD_LABELS", "k8s-app=kube-dns")
LABS_DNS_PORTS = envlist("LABS_DNS_PORTS", "53")
LABS_DNS_CIDRS = envlist("LABS_DNS_CIDRS")
# KubeVirt confirms a pause or resume (the VMI's Paused condition) a moment after answering it; one
# not confirmed this long after it was asked is dropped with an error on the instance.
LABS_PAUSE_TIMEOUT_SECONDS = float(os.getenv("LABS_PAUSE_TIMEOUT_SECONDS", "60"))

# --- Status from a watch (labs/watcher.py, `manage.py watch_cluster`) ---------------------------
# The watcher writes its heartbeat this often; pages call status whose heartbeat is older than
# LABS_WATCH_STALE_SECONDS "last known" and offer "refresh now" (at most LABS_REFRESH_RATE per instance).
LABS_WATCH_HEARTBEAT_SECONDS = float(os.getenv("LABS_WATCH_HEARTBEAT_SECONDS", "5"))
LABS_WATCH_STALE_SECONDS = float(os.getenv("LABS_WATCH_STALE_SECONDS", "30"))
# Each watch request's timeoutSeconds (the API server ends it then; the watcher resumes from the
# last resourceVersion seen, bookmarks included), and the longest wait between reconnects.
LABS_WATCH_TIMEOUT_SECONDS = envint("LABS_WATCH_TIMEOUT_SECONDS", 300)
LABS_WATCH_MAX_BACKOFF_SECONDS = float(os.getenv("LABS_WATCH_MAX_BACKOFF_SECONDS", "30"))
# How often the watcher re-derives every active instance's status from what it holds (no cluster
# call): pause confirmations and start time-outs that no event would announce.
LABS_WATCH_RESYNC_SECONDS = float(os.getenv("LABS_WATCH_RESYNC_SECONDS", "10"))
LABS_REFRESH_RATE = os.getenv("LABS_REFRESH_RATE", "1/10s")

# --- Lab limits ------------------------------------------------------------------------------
# Running instances a (non-staff) user may have across all labs; each lab also sets its own limit.
LABS_MAX_INSTANCES_PER_USER = envint("LABS_MAX_INSTANCES_PER_USER", 2)

# --- Channels and cache ---------------------------------------------------------------------------
# With several app processes, Redis carries what they must share: console kicks between replicas
# (channel layer) and rate limit counts (laborchestrator/ratelimit.py). One process needs neither.
REDIS_URL = os.getenv("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Console proxy (vncproxy) -----------------------------------------------------------------
# A VNC or serial stream with no bytes either way for this long is closed (close code 4408).
CONSOLE_IDLE_TIMEOUT_SECONDS = float(os.getenv("CONSOLE_IDLE_TIMEOUT_SECONDS", "900"))
# Streams one user may have open at once (each machine's VNC and serial count separately), and
# streams one server process relays at once; beyond them a connection is refused (4429).
CONSOLE_MAX_STREAMS_PER_USER = envint("CONSOLE_MAX_STREAMS_PER_USER", 8)
CONSOLE_MAX_STREAMS_PROCESS = envint("CONSOLE_MAX_STREAMS_PROCESS", 500)
# Bytes a stream may hold per direction before it stops reading the faster side (backpressure).
CONSOLE_BUFFER_BYTES = envint("CONSOLE_BUFFER_BYTES", 256 * 1024)
# Seconds to open the machine's websocket on the cluster before answering 4503.
CONSOLE_UPSTREAM_OPEN_TIMEOUT_SECONDS = float(os.getenv("CONSOLE_UPSTREAM_OPEN_TIMEOUT_SECONDS", "10"))
# A ping to the machine's websocket this often (0: never): virt-api sends no keepalive on console
# streams, and proxies and load balancers drop silent websockets. Unanswered by the next one, the
# stream ends (4502).
CONSOLE_UPSTREAM_PING_SECONDS = float(os.getenv("CONSOLE_UPSTREAM_PING_SECONDS", "20"))

# --- LTI 1.3 tool (lti/, see lti/README.md) ---------------------------------------------------
# Seconds a launch may take after its OIDC login; later, the login must start again.
LTI_LOGIN_STATE_SECONDS = envint("LTI_LOGIN_STATE_SECONDS", 600)
# Clock difference tolerated with a platform when checking a token's exp and iat.
LTI_CLOCK_SKEW_SECONDS = envint("LTI_CLOCK_SKEW_SECONDS", 60)
# Seconds one call to a platform (its keyset, token or score endpoint) may take.
LTI_HTTP_TIMEOUT_SECONDS = float(os.getenv("LTI_HTTP_TIMEOUT_SECONDS", "10"))
# Hours a key retired by `manage.py lti_rotate_keys` stays in the tool's JWKS.
LTI_KEY_GRACE_HOURS = envint("LTI_KEY_GRACE_HOURS", 72)
# Score delivery (`manage.py send_grades`): first retry delay, longest delay, attempts before giving up.
LTI_GRADE_RETRY_BASE_SECONDS = envint("LTI_GRADE_RETRY_BASE_SECONDS", 30)
LTI_GRADE_RETRY_MAX_SECONDS = envint("LTI_GRADE_RETRY_MAX_SECONDS", 3600)
LTI_GRADE_MAX_ATTEMPTS = envint("LTI_GRADE_MAX_ATTEMPTS", 20)
# gradingProgress of a score below 100 %. Moodle drops the score of anything but FullyGraded, so the
# gradebook would stay empty until a tutorial is complete with "Pending" (lti/README.md).
LTI_PARTIAL_GRADING_PROGRESS = os.getenv("LTI_PARTIAL_GRADING_PROGRESS", "FullyGraded")

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's parsers plus the checks of laborchestrator/inputs.py (depth, NUL, surrogates).
    "DEFAULT_PARSER_CLASSES": [
        "laborchestrator.api.parsers.JSONParser",
        "laborchestrator.api.parsers.FormParser",
        "laborchestrator.api.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "laborchestrator.api.pagination.PageNumberPagination",
    "PAGE_SIZE": envint("API_PAGE_SIZE", 50),
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "laborchestrator.api.exceptions.exception_handler",
    # Scoped rates for the expensive or sensitive actions (see laborchestrator/api/throttles.py),
    # per user, as "<count>/<second|minute|hour|day>".
    "DEFAULT_THROTTLE_RATES": {
        "instance_start": os.getenv("API_THROTTLE_INSTANCE_START", "30/hour"),
        "console_ticket": os.getenv("API_THROTTLE_CONSOLE_TICKET", "60/minute"),
        "step_check": os.getenv("API_THROTTLE_STEP_CHECK", "20/minute"),
    },
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=envint("JWT_ACCESS_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=envint("JWT_REFRESH_DAYS", 1)),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lab Orchestrator API",
    "DESCRIPTION": "Labs, lab instances, consoles and tutorials. Authenticate with a JWT from "
    "`POST /api/auth/token/` (`Authorization: Bearer <access>`) or a browser session.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Anonymous users may read the schema and the docs, nothing else.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the sidecar package's static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Failed password sign-ins allowed per user name and per client address (REMOTE_ADDR; behind the
# ingress, the app server's --proxy-headers puts the client's address there), as "<count>/<period>".
# A lock ends at most one period after the failures that caused it (accounts/signin_limits.py).
SIGNIN_THROTTLE_USERNAME = os.getenv("SIGNIN_THROTTLE_USERNAME", "10/10min")
SIGNIN_THROTTLE_ADDRESS = os.getenv("SIGNIN_THROTTLE_ADDRESS", "50/10min")
# Ready instances of a scheduled class are started this many minutes before its time (labs.lifecycle).
POOL_LEAD_MINUTES = envint("POOL_LEAD_MINUTES", 10)
# Wrong class access codes and one-time sign-in links allowed per client address (classes/joining.py).
CLASS_CODE_THROTTLE_ADDRESS = os.getenv("CLASS_CODE_THROTTLE_ADDRESS", "10/10min")
# Hours a one-time sign-in link from a CSV import of students stays valid.
SIGN_IN_LINK_HOURS = envint("SIGN_IN_LINK_HOURS", 72)
# Seconds a console ticket (issued by the API for opening a VNC or serial websocket) stays valid.
CONSOLE_TICKET_SECONDS = envint("CONSOLE_TICKET_SECONDS", 60)

# LOG_FORMAT=json: one JSON object per line for the cluster's log collector (laborchestrator/logging.py).
LOG_FORMAT = "json" if os.getenv("LOG_FORMAT", "plain").strip().lower() == "json" else "plain"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "laborchestrator.logging.RequestIDFilter"},
        "redact_secrets": {"()": "laborchestrator.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "laborchestrator.logging.JSONFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    # Replaces Django's own handlers (plain text to stderr when DEBUG): every line goes through ours.
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        # asyncssh logs every connection and channel at INFO; each check run is logged once by
        # tutorials.checks instead.
        "asyncssh": {"level": "WARNING"},
    },
}

"""
omm settings. Everything comes from the environment (django-environ); `.env.example` documents
every variable with its default. Development defaults are explicit; secrets have no production
default, so a misconfigured production process fails at start rather than running insecurely.
"""

import ipaddress
import sys
from pathlib import Path

import environ

from omm_project.lib.dotenv import dotenv_load

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env (written by scripts/serve.sh on first run) is read if present; real environment
# variables win over it (the one rule, shared with scripts/serve.sh: omm_project/lib/dotenv.py).
dotenv_load(BASE_DIR / ".env")

DEBUG = env.bool("DJANGO_DEBUG", default=False)

# Where the embedded default keeps its SQLite file, broker queue and index snapshots.
OMM_DATA_DIR = BASE_DIR / env.str("OMM_DATA_DIR", default="var")  # relative to the repo

if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="omm-insecure-development-key")
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")  # required: no production default

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS. Off by default (the embedded evaluation serves plain HTTP on loopback); docs/deployment.md
# "Production settings" turns each on, and `manage.py check --deploy` then has nothing to say.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
# Load balancers probe health over plain HTTP: no redirect for them.
SECURE_REDIRECT_EXEMPT = env.list("DJANGO_SECURE_REDIRECT_EXEMPT", default=[r"^status(/live)?$"])
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=False)
# "HEADER,value" (e.g. HTTP_X_FORWARDED_PROTO,https): a request is HTTPS when the proxy says so.
# Only behind a proxy that sets this header on every request (and drops a client's own).
_proxy_ssl_header = env.list("DJANGO_SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise environ.ImproperlyConfigured("DJANGO_SECURE_PROXY_SSL_HEADER is HEADER,value (HTTP_X_FORWARDED_PROTO,https)")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) or None

# Django's cache: today only the admin login throttle's counters. The default is per process; a
# shared cache (OMM_CACHE_URL=redis://127.0.0.1:6379/2) makes the limit hold across processes.
CACHES = {"default": env.cache_url("OMM_CACHE_URL", default="locmemcache://")}
# Admin login: this many failures for one username from one address within the window refuse it.
OMM_ADMIN_LOGIN_MAX_FAILURES = env.int("OMM_ADMIN_LOGIN_MAX_FAILURES", default=5)
OMM_ADMIN_LOGIN_WINDOW_SECONDS = env.int("OMM_ADMIN_LOGIN_WINDOW_SECONDS", default=900)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets, served from our own static files (no CDN)
    "omm_project.core",
    "banks",
    "exchanges",
    "matching",
    "hashing",
    "reviews",
    "scans",  # backfill scans (docs/scans.md)
    "ui",  # the review UI for people (docs/ui.md)
]

MIDDLEWARE = [
    "omm_project.lib.request_log.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # The access policy of every routed view (API key and scope; omm_project/core/auth.py).
    "omm_project.core.auth.AccessMiddleware",
    # Request body caps (after the access check: strangers learn nothing of the limits).
    "omm_project.lib.uploads.BodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so its 400s get the headers above: NUL (or other unstorable text) in path or query.
    "omm_project.lib.middleware.InputTextMiddleware",
]

ROOT_URLCONF = "omm_project.urls"
WSGI_APPLICATION = "omm_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# The embedded default is a SQLite file so that a laptop evaluation needs no database server.
DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{OMM_DATA_DIR / 'omm.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat, an import) write to the file. SQLite takes one writer
    # at a time, so: WAL (readers never wait for the writer), a busy timeout (a writer waits for
    # the lock instead of failing), and IMMEDIATE transactions: a transaction takes the write lock
    # when it begins, so it waits (busy timeout) rather than failing at once with "database is
    # locked" when it reads first and another process commits before it writes (a deferred
    # transaction cannot upgrade a stale read snapshot). Writers keep their transactions short
    # (imports commit per batch) so that the wait stays well under the timeout.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("timeout", env.float("OMM_SQLITE_TIMEOUT_SECONDS", default=30.0))
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("OMM_DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # PostgreSQL compiles a query with LLVM once its estimated cost passes jit_above_cost; for the
    # review queue's counts and filtered pages (100,000 cases) the compile took 35 ms of a 130 ms
    # query and saved nothing (docs/reviews.md, At scale). omm's queries are short, so JIT is off
    # for its connections (a startup option); OMM_PG_JIT=true sends nothing, e.g. behind a pooler
    # that refuses startup options.
    if not env.bool("OMM_PG_JIT", default=False):
        pg_options = DATABASES["default"].setdefault("OPTIONS", {})
        pg_options["options"] = f"{pg_options.get('options', '')} -c jit=off".strip()

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# Serve admin and Swagger assets straight from the apps until `collectstatic` has been run.
WHITENOISE_USE_FINDERS = True

# Uploads are hashed in memory or in a temp file and never kept (see hashing.services).
# Every request body other than a media upload is refused (413) above this many bytes
# (omm_project/lib/uploads.py BodyLimitMiddleware); media uploads have OMM_MAX_UPLOAD_BYTES.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("OMM_MAX_JSON_BODY_BYTES", default=2 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- omm --------------------------------------------------------------------------------------

# Which roles this process serves; each can be scaled separately behind path-based routing.
OMM_ROLES = set(env.list("OMM_ROLES", default=["hasher", "matcher", "curator"]))
_unknown_roles = OMM_ROLES - {"hasher", "matcher", "curator"}
if _unknown_roles:
    raise environ.ImproperlyConfigured(f"OMM_ROLES has unknown roles: {sorted(_unknown_roles)}")

# Evaluation switch: serve /c, /h and /m without an API key. Never turn it on in production.
OMM_OPEN_ACCESS = env.bool("OMM_OPEN_ACCESS", default=False)
# /metrics needs a key with the `metrics` scope, except from these networks (CIDRs, matched
# against the peer address; behind a proxy that is the proxy's). Empty: a key always.
OMM_METRICS_ALLOWED_NETWORKS = env.list("OMM_METRICS_ALLOWED_NETWORKS", default=[])
for _network in OMM_METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise environ.ImproperlyConfigured(f"OMM_METRICS_ALLOWED_NETWORKS: not a network: {_network!r}") from None
# Keys checked without the database, for database-less hashers: "name:scope+scope:sha256hex,..."
# (`manage.py create_api_key NAME --static` prints one).
OMM_STATIC_API_KEYS = env.list("OMM_STATIC_API_KEYS", default=[])
for _entry in OMM_STATIC_API_KEYS:
    if _entry.count(":") != 2 or len(_entry.rsplit(":", 1)[1]) != 64:
        raise environ.ImproperlyConfigured(f"OMM_STATIC_API_KEYS entry is not name:scopes:sha256 ({_entry[:20]}...)")

# python-threatexchange extension points, as dotted paths.
OMM_SIGNAL_TYPES = env.list(
    "OMM_SIGNAL_TYPES",
    default=[
        "threatexchange.signal_type.pdq.signal.PdqSignal",
        "threatexchange.signal_type.md5.VideoMD5Signal",
    ],
)
OMM_CONTENT_TYPES = env.list(
    "OMM_CONTENT_TYPES",
    default=[
        "threatexchange.content_type.photo.PhotoContent",
        "threatexchange.content_type.video.VideoContent",
    ],
)
OMM_EXCHANGE_TYPES = env.list(
    "OMM_EXCHANGE_TYPES",
    default=[
        "threatexchange.exchanges.impl.static_sample.StaticSampleSignalExchangeAPI",
        # Same name, config and file format as pytx's LocalFileSignalExchangeAPI, but streams the
        # file instead of reading it into memory.
        "exchanges.local_file.StreamingLocalFileSignalExchangeAPI",
        "threatexchange.exchanges.impl.fb_threatexchange_api.FBThreatExchangeSignalExchangeAPI",
        "threatexchange.exchanges.impl.ncmec_api.NCMECSignalExchangeAPI",
        "threatexchange.exchanges.impl.stop_ncii_api.StopNCIISignalExchangeAPI",
        "threatexchange.exchanges.impl.techagainstterrorism_api.TATSignalExchangeAPI",
        # omm-to-omm sharing: follow a bank of another omm instance (docs/exchanges.md).
        "exchanges.omm_api.OmmSignalExchangeAPI",
    ],
)

# Photos whose PDQ quality is below this floor are reported and refused for banking.
OMM_PDQ_QUALITY_FLOOR = env.int("OMM_PDQ_QUALITY_FLOOR", default=50)

# --- Hashing: uploads and URL fetching (SSRF rules also apply to webhook URLs) ---
OMM_MAX_UPLOAD_BYTES = env.int("OMM_MAX_UPLOAD_BYTES", default=100 * 1024 * 1024)
OMM_MAX_REMOTE_FILE_BYTES = env.int("OMM_MAX_REMOTE_FILE_BYTES", default=100 * 1024 * 1024)
OMM_URL_FETCH_TIMEOUT_SECONDS = env.float("OMM_URL_FETCH_TIMEOUT_SECONDS", default=30.0)
# Empty: any host. Otherwise only these hostnames (and their subdomains).
OMM_URL_ALLOWED_HOSTNAMES = env.list("OMM_URL_ALLOWED_HOSTNAMES", default=[])
# Private, shared and loopback addresses are refused unless allowed; link-local (cloud metadata)
# stays refused either way.
OMM_URL_ALLOW_PRIVATE = env.bool("OMM_URL_ALLOW_PRIVATE", default=False)
OMM_URL_ALLOWED_NETWORKS = env.list("OMM_URL_ALLOWED_NETWORKS", default=[])
# The three OMM_URL_* address settings above are the one policy of every outgoing request
# (content URLs, exchanges, write-back, webhooks: omm_project.lib.outbound). A request with no
# limit of its own (exchange API calls) must end, headers and body included, within this.
OMM_OUTBOUND_TIMEOUT_SECONDS = env.float("OMM_OUTBOUND_TIMEOUT_SECONDS", default=300.0)
# Photos with more pixels are refused (400) from their header, before decoding. Hashing costs up
# to about 14 bytes per pixel (bench/bench_hash_memory.py; 4 for RGB): 50 MP is at most about
# 0.7 GiB per request.
# (Empty, as older .env files have it, means the default.)
OMM_MAX_IMAGE_PIXELS = int(env.str("OMM_MAX_IMAGE_PIXELS", default="") or 50_000_000)
# Photos decoded and hashed at once per process (threads share it); others wait for a slot up to
# OMM_HASH_QUEUE_SECONDS, then get 503. Worst case per process: this x the cap above x 14 bytes.
OMM_HASH_CONCURRENCY = env.int("OMM_HASH_CONCURRENCY", default=2)
OMM_HASH_QUEUE_SECONDS = env.float("OMM_HASH_QUEUE_SECONDS", default=10.0)
# Text and PDF (when their content types are enabled, docs/hashing.md "Text and PDF"): the longest
# text hashed (an upload, or a PDF's extracted text; 413/400 above it), the largest PDF read
# (pdfminer.six holds its objects in memory), its most pages, and how long its text may take to
# extract (checked between pages).
OMM_MAX_TEXT_BYTES = env.int("OMM_MAX_TEXT_BYTES", default=10 * 1024 * 1024)
OMM_PDF_MAX_BYTES = env.int("OMM_PDF_MAX_BYTES", default=20 * 1024 * 1024)
OMM_PDF_MAX_PAGES = env.int("OMM_PDF_MAX_PAGES", default=500)
OMM_PDF_EXTRACT_SECONDS = env.float("OMM_PDF_EXTRACT_SECONDS", default=20.0)
# python-threatexchange file hashers (e.g. vPDQ, which decodes a whole video with FFmpeg) run in a
# child process per file (hashing/bounded.py): killed after this many seconds, and given this much
# address space beyond its start (MiB; 0: unbounded). Either way the upload gets 400 with the reason.
OMM_HASH_FILE_SECONDS = env.float("OMM_HASH_FILE_SECONDS", default=120.0)
OMM_HASH_FILE_MEMORY_MB = env.int("OMM_HASH_FILE_MEMORY_MB", default=1024)

# --- Exchanges ---
# Records per committed batch of a fetch (each batch commits with the checkpoint it reached).
OMM_FETCH_BATCH_SIZE = env.int("OMM_FETCH_BATCH_SIZE", default=5000)
# Database connections a fetch writes each batch on, in parallel (Postgres only; 1 or 2): the
# database's index inserts and FK checks are the bottleneck, and one connection uses one core.
OMM_FETCH_WRITERS = env.int("OMM_FETCH_WRITERS", default=2)
# Exchanges that only publish full snapshots (sample, local files) are re-read this often.
OMM_EXCHANGE_SNAPSHOT_INTERVAL_SECONDS = env.float("OMM_EXCHANGE_SNAPSHOT_INTERVAL_SECONDS", default=600.0)
# Folders a local file exchange may read from (empty: any path the process can read).
OMM_EXCHANGE_FILE_ROOTS = env.list("OMM_EXCHANGE_FILE_ROOTS", default=[])

# --- Reviews, match log and actions ---
# Read by the reviews app as django.conf.settings.OMM_*; docs/reviews.md "Settings" lists them.
# Match log rows older than this are deleted by the hourly prune task; 0 keeps them forever.
OMM_MATCH_LOG_RETENTION_DAYS = env.int("OMM_MATCH_LOG_RETENTION_DAYS", default=90)
# Keep submitted hashes (never media) this long to re-match them against new bank content; 0: off.
OMM_RETROACTION_WINDOW_HOURS = env.float("OMM_RETROACTION_WINDOW_HOURS", default=0)
# Retroaction for new content waits this long, so matchers have loaded the content and the live
# lookups in between are logged by the lookup itself (the pair is then skipped).
OMM_RETROACTION_DELAY_SECONDS = env.float("OMM_RETROACTION_DELAY_SECONDS", default=30.0)
# Remembered submissions compared per database round trip during retroaction.
OMM_RETROACTION_BATCH = env.int("OMM_RETROACTION_BATCH", default=20000)
# A webhook delivery is dead (the dead letter) after this many failed attempts.
OMM_WEBHOOK_MAX_ATTEMPTS = env.int("OMM_WEBHOOK_MAX_ATTEMPTS", default=8)
# Backoff between attempts of webhooks and exchange reports: base * 2**(attempt-1), capped.
OMM_WEBHOOK_BACKOFF_BASE_SECONDS = env.float("OMM_WEBHOOK_BACKOFF_BASE_SECONDS", default=30.0)
OMM_WEBHOOK_BACKOFF_MAX_SECONDS = env.float("OMM_WEBHOOK_BACKOFF_MAX_SECONDS", default=3600.0)
# Deadline of one webhook POST (connect, headers and all).
OMM_WEBHOOK_TIMEOUT_SECONDS = env.float("OMM_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# An exchange report is dead after this many failed attempts.
OMM_EXCHANGE_REPORT_MAX_ATTEMPTS = env.int("OMM_EXCHANGE_REPORT_MAX_ATTEMPTS", default=6)
# A false-positive review disables the content for matching, unless the request says otherwise.
OMM_FALSE_POSITIVE_DISABLES = env.bool("OMM_FALSE_POSITIVE_DISABLES", default=False)
# Action rules, bank labels and exchanges' reporting switches are cached per process this long.
OMM_ACTION_RULES_CACHE_SECONDS = env.float("OMM_ACTION_RULES_CACHE_SECONDS", default=10.0)
# Live clusters of submissions (docs/reviews.md, Clusters): on by default for matched submissions.
OMM_CLUSTERING = env.bool("OMM_CLUSTERING", default=True)
# Also cluster submissions that matched no bank ("have we seen this before"); off for privacy.
OMM_CLUSTER_ALL_SUBMISSIONS = env.bool("OMM_CLUSTER_ALL_SUBMISSIONS", default=False)
# The rolling window of clustering: older submissions leave the clusterer's memory and the table.
OMM_CLUSTER_WINDOW_HOURS = env.float("OMM_CLUSTER_WINDOW_HOURS", default=168.0)
# A PDQ submission joins a cluster whose member is within this Hamming distance.
OMM_CLUSTER_PDQ_THRESHOLD = env.int("OMM_CLUSTER_PDQ_THRESHOLD", default=31)
# A cluster with more submissions than this in an hour is spreading (priority up, webhook event).
OMM_CLUSTER_SPREADING_PER_HOUR = env.int("OMM_CLUSTER_SPREADING_PER_HOUR", default=50)

# --- Review UI (docs/ui.md) ---
# Show the submission's and the bank content's media on the case page, fetched from their URIs
# (the OMM_URL_* address policy applies) when a reviewer opens the page. Off: nothing is fetched.
# A preview is re-encoded in memory and answered with Cache-Control: no-store; it is never stored.
OMM_UI_PREVIEW = env.bool("OMM_UI_PREVIEW", default=False)
# The largest media a preview fetches (413 above it; also capped by OMM_MAX_REMOTE_FILE_BYTES and
# by the 16 MiB a fetch keeps in memory, so a preview never touches the disk).
OMM_UI_PREVIEW_MAX_BYTES = env.int("OMM_UI_PREVIEW_MAX_BYTES", default=10 * 1024 * 1024)

# --- Matching ---
# PDQ distance at or below which two hashes match (HMA and python-threatexchange use 31); a bank's
# own threshold (/c/bank/<name>/match_settings) replaces it for that bank.
OMM_PDQ_MATCH_THRESHOLD = env.int("OMM_PDQ_MATCH_THRESHOLD", default=31)
# The most signals one POST /m/raw_lookup may send (413 above it). The body is also held to
# OMM_MAX_JSON_BODY_BYTES: 10,000 PDQ hashes take about 0.7 MB of its 2 MB.
OMM_RAW_LOOKUP_BATCH_MAX = env.int("OMM_RAW_LOOKUP_BATCH_MAX", default=10_000)
# Threads one search of many PDQ hashes (a batch lookup) spreads over, at most one per CPU; its
# gathers and distance calls release the GIL. 1: on the request's thread alone. Single lookups
# never use them.
OMM_PDQ_SEARCH_THREADS = env.int("OMM_PDQ_SEARCH_THREADS", default=2)
# Where snapshot bytes live: "database" (chunked rows in the same database; every host that
# reaches Postgres reaches them) or "storage" (a Django storage, e.g. an object store, named by
# OMM_SNAPSHOT_STORAGE_ALIAS in STORAGES).
OMM_SNAPSHOT_STORAGE = env.str("OMM_SNAPSHOT_STORAGE", default="database")
OMM_SNAPSHOT_STORAGE_ALIAS = env.str("OMM_SNAPSHOT_STORAGE_ALIAS", default="default")
# Size of one stored chunk of a snapshot (database storage).
OMM_SNAPSHOT_CHUNK_BYTES = env.int("OMM_SNAPSHOT_CHUNK_BYTES", default=4 * 1024 * 1024)
# Ready snapshots kept per signal type; older ones are deleted after a new one is published.
OMM_SNAPSHOTS_KEPT = env.int("OMM_SNAPSHOTS_KEPT", default=2)
# A build holds a lease on its signal type's lock for this long and renews it as it goes, so a
# crashed worker's lock expires instead of wedging builds.
OMM_INDEX_BUILD_LEASE_SECONDS = env.int("OMM_INDEX_BUILD_LEASE_SECONDS", default=300)
# Rows fetched per round trip while streaming signals out of the database.
OMM_INDEX_BUILD_BATCH = env.int("OMM_INDEX_BUILD_BATCH", default=50_000)
# Matchers: how often the database is polled for changes and new snapshots (Redis only wakes
# them earlier). This bounds freshness.
OMM_MATCHER_POLL_SECONDS = env.float("OMM_MATCHER_POLL_SECONDS", default=1.0)
# Matchers: the least time between the starts of two rounds when Redis wake-ups come faster
# (a burst of writes), so N matchers cost the database at most N/this rounds a second.
OMM_MATCHER_MIN_ROUND_SECONDS = env.float("OMM_MATCHER_MIN_ROUND_SECONDS", default=0.02)
# Matchers wait a random 0..N seconds before loading a newly published snapshot so replicas
# do not all read it at the same moment.
OMM_MATCHER_RELOAD_JITTER_SECONDS = env.float("OMM_MATCHER_RELOAD_JITTER_SECONDS", default=2.0)
# A matcher that finds no snapshot of a type reads up to this many signals straight from the
# database (a fresh deployment is ready at once); above it, it asks for a build and waits.
OMM_MATCHER_SELF_BUILD_MAX = env.int("OMM_MATCHER_SELF_BUILD_MAX", default=100_000)
# A matcher whose delta (content added or changed since its snapshot) grows past this asks for
# a rebuild rather than wait for beat; deltas are meant to stay small.
OMM_MATCHER_DELTA_REBUILD = env.int("OMM_MATCHER_DELTA_REBUILD", default=50_000)
# Bulk imports' changes (one change row per batch, naming a range of content ids) go into the
# delta only while it stays under this many entries; past it they wait for the next snapshot,
# which the matcher asks for. A matcher re-reads every content a change names, so a 10M import
# applied content by content would cost each replica more memory and CPU than the import.
OMM_MATCHER_DELTA_MAX = env.int("OMM_MATCHER_DELTA_MAX", default=200_000)
# A change-log id that is missing (a transaction still open, or rolled back) is re-checked for
# this long before it is given up on; later snapshots include anything committed after that.
OMM_MATCHER_GAP_SECONDS = env.int("OMM_MATCHER_GAP_SECONDS", default=300)
# /status reports INDEX-STALE when the matcher has not reached the database for this long;
# 0 never does: a matcher keeps serving its last state through an outage.
OMM_MATCHER_MAX_STALE_SECONDS = env.int("OMM_MATCHER_MAX_STALE_SECONDS", default=0)
# "auto": start the matcher's background loader in web servers (gunicorn, uwsgi, runserver)
# and on first use; never under pytest. "lazy": only on first use. "off": never (tests drive
# refreshes by hand). matching.conf.autostart_mode() reads it.
OMM_MATCHER_AUTOSTART = env.str("OMM_MATCHER_AUTOSTART", default="auto")
# Matcher processes on one machine share one copy of each PDQ index through a file in this
# directory (see matching.shared_index); "auto" is /dev/shm/omm-index when /dev/shm is
# writable, "" turns sharing off (each process holds its own copy).
OMM_MATCHER_SHARED_DIR = env.str("OMM_MATCHER_SHARED_DIR", default="auto")
# Indexes of fewer signals than this are held per process: sharing saves little on them.
OMM_MATCHER_SHARED_MIN_SIGNALS = env.int("OMM_MATCHER_SHARED_MIN_SIGNALS", default=100_000)
# Redis channel on which builders announce new snapshots (when REDIS_URL is set).
OMM_MATCHING_CHANNEL = env.str("OMM_MATCHING_CHANNEL", default="omm:matching:snapshots")

# --- Scans (docs/scans.md) ---
# Local folders that POST /c/scans may scan (a directory, or a file of URLs or signals under one);
# empty: the API refuses local paths. `manage.py scan`, run by the operator, may name any path.
# Every worker must see the same path (a shared or replicated file system).
OMM_SCAN_ROOTS = env.list("OMM_SCAN_ROOTS", default=[])
# Items per chunk, the unit of work of one Celery task (and of a retry after a lost worker).
OMM_SCAN_CHUNK_ITEMS = env.int("OMM_SCAN_CHUNK_ITEMS", default=100)
# Chunks made per listing step (one ListObjectsV2 page is at most 1000 keys).
OMM_SCAN_LIST_PAGE_CHUNKS = env.int("OMM_SCAN_LIST_PAGE_CHUNKS", default=10)
# A worker holds a chunk this long (renewed as it goes); a dead worker's chunk is run again after.
OMM_SCAN_CHUNK_LEASE_SECONDS = env.float("OMM_SCAN_CHUNK_LEASE_SECONDS", default=300.0)
# A chunk whose worker died this many times is given up: its items count as failed (worker_lost).
OMM_SCAN_CHUNK_MAX_ATTEMPTS = env.int("OMM_SCAN_CHUNK_MAX_ATTEMPTS", default=3)
# A chunk put back (index not loaded yet, bucket unreachable) is tried again after this long.
OMM_SCAN_RETRY_SECONDS = env.float("OMM_SCAN_RETRY_SECONDS", default=30.0)
# A running scan with no chunk finished for this long has its pending chunks sent again (lost messages).
OMM_SCAN_STALL_SECONDS = env.float("OMM_SCAN_STALL_SECONDS", default=900.0)
# S3-compatible endpoint for s3:// sources (empty: AWS); an operator's setting, never a caller's.
OMM_SCAN_S3_ENDPOINT_URL = env.str("OMM_SCAN_S3_ENDPOINT_URL", default="")
OMM_SCAN_S3_REGION = env.str("OMM_SCAN_S3_REGION", default="us-east-1")
# Connect and read timeout of each S3 call.
OMM_SCAN_S3_TIMEOUT_SECONDS = env.float("OMM_SCAN_S3_TIMEOUT_SECONDS", default=30.0)

# --- Redis and Celery --------------------------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
# Redis pub/sub channel on which committed bank writes wake the matchers (banks.changes); they
# also poll the database every OMM_MATCHER_POLL_SECONDS, so a lost message only delays.
OMM_BANK_CHANGES_CHANNEL = env.str("OMM_BANK_CHANGES_CHANNEL", default="omm:banks:changes")

# Without Redis the embedded default uses kombu's filesystem transport: a local broker that needs
# no server, good for one machine.
_broker_dir = OMM_DATA_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # kombu's default is ./control: the checkout, under serve.sh
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
# A request sends its tasks after commit (omm_project/lib/tasks.py). With the broker down, such a
# send must fail fast, be logged and be left for beat to send again, not hold the request: kombu
# would otherwise retry each publish and wait for a connection. A send gives up after the connect
# timeout times (1 + retries); after a failure, sends are skipped (logged) for
# OMM_ENQUEUE_PAUSE_SECONDS so a lookup that fires many rules does not wait once per rule.
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": env.int("OMM_TASK_PUBLISH_RETRIES", default=1),
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT}
OMM_ENQUEUE_PAUSE_SECONDS = env.float("OMM_ENQUEUE_PAUSE_SECONDS", default=5.0)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Acknowledge after the task ran so that a worker crash re-delivers it (tasks are idempotent).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(OMM_DATA_DIR / "celerybeat-schedule")
# Periodic work. Each task is idempotent and takes a lock, so an overlap or a duplicate is harmless.
CELERY_BEAT_SCHEDULE: dict = {
    # Exchanges publish new hashes continuously; a minute keeps banks fresh without hammering
    # their APIs. Each exchange also has its own backoff after failures.
    "exchanges-fetch-all": {
        "task": "exchanges.fetch_all",
        "schedule": env.float("OMM_FETCH_INTERVAL_SECONDS", default=60.0),
    },
    # Rebuilding is cheap when nothing changed (it compares checkpoints first). Matchers apply
    # small deltas between builds, so this interval bounds delta size, not freshness.
    "matching-index-build-all": {
        "task": "matching.index_build_all",
        "schedule": env.float("OMM_INDEX_BUILD_INTERVAL_SECONDS", default=60.0),
    },
    # The clusterer (docs/reviews.md, Clusters): a batch per signal type is cheap when nothing is
    # new, and the interval is most of the lag between a lookup and its cluster.
    "matching-clusters-update": {
        "task": "matching.clusters_update",
        "schedule": env.float("OMM_CLUSTER_INTERVAL_SECONDS", default=5.0),
    },
    # Retention is in days; hourly keeps each delete small and steady.
    "reviews-prune": {"task": "reviews.prune_match_log", "schedule": 3600.0},
    # Re-enqueue webhook deliveries and exchange reports whose message was lost (at least once
    # delivery); their compare-and-set claims make duplicates harmless.
    "reviews-enqueue-due": {"task": "reviews.enqueue_due", "schedule": 60.0},
    # Re-enqueue background deletions of banks whose message was lost or whose worker died; a
    # run resumes from the rows left and a duplicate finds nothing to do. A deleted bank is
    # invisible at once, so a few minutes only delay when its space and name come back.
    "banks-purge-pending": {"task": "banks.purge_pending", "schedule": 300.0},
    # Scans whose listing or chunk messages were lost, or whose workers died (docs/scans.md): a
    # lease is minutes long, so a minute adds little to a resume and costs three small queries.
    "scans-resume": {"task": "scans.resume", "schedule": 60.0},
}

# --- Django REST framework ------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["omm_project.core.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["omm_project.core.auth.HasRoleScope"],
    "DEFAULT_SCHEMA_CLASS": "omm_project.core.schema.OmmAutoSchema",
    "EXCEPTION_HANDLER": "omm_project.lib.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "omm_project.lib.api.Pagination",
    "PAGE_SIZE": 100,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        # DRF's parsers plus omm_project.lib.inputs' rules (storable text, finite numbers, depth).
        "omm_project.lib.parsers.JSONParser",
        "omm_project.lib.parsers.MultiPartParser",
        "omm_project.lib.parsers.FormParser",
    ],
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Open Media Match API (omm)",
    "DESCRIPTION": "Hasher-matcher-actioner compatible with HMA 2.0. See docs/compat.md.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI from drf-spectacular-sidecar's static files: works offline, and the admin's
    # origin runs no script from a third party.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # JSON endpoints also parse form bodies (DRF's parsers), but JSON is what they are for; upload
    # endpoints document their multipart bodies themselves.
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
    # Cases have a `state` and a `verdict` of their own, beside deliveries' and reviews' (which
    # keep the names they had before cases).
    "ENUM_NAME_OVERRIDES": {
        "StateEnum": "reviews.choices.SendState",
        "VerdictEnum": "reviews.choices.Verdict",
        "CaseStateEnum": "reviews.choices.CaseState",
        "CaseVerdictEnum": "reviews.choices.CaseVerdict",
        "QuarantineStateEnum": "reviews.choices.QuarantineState",
        "SubmitStatusEnum": "reviews.choices.SubmitStatus",
        "SubmitSourceEnum": "reviews.choices.SubmitSource",
        "SourceEnum": "reviews.choices.MatchSource",  # the match log's, named as before submissions
        "ScanKindEnum": "scans.choices.SourceKind",
        "ScanStateEnum": "scans.choices.ScanState",
    },
    # /status, /status/live and /metrics are plain Django views; the hook documents them.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "omm_project.core.schema.postprocess_plain_paths",
    ],
}

# Logs: one JSON object per line with the request id, for servers and log collectors; "text" for
# people. auto (the default): text when standard error is a terminal (manage.py commands run by
# hand, runserver), JSON otherwise (gunicorn, Celery and commands under a supervisor, Docker
# without -t, a pipe or a file). Set json or text to force one.
OMM_LOG_FORMAT = env.str("OMM_LOG_FORMAT", default="auto").strip().lower()
if OMM_LOG_FORMAT not in ("auto", "json", "text"):
    raise environ.ImproperlyConfigured(f"OMM_LOG_FORMAT must be auto, json or text, not {OMM_LOG_FORMAT!r}")
if OMM_LOG_FORMAT == "auto":
    OMM_LOG_FORMAT = "text" if sys.stderr is not None and sys.stderr.isatty() else "json"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "omm_project.lib.request_log.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "omm_project.lib.request_log.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": OMM_LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": env.str("OMM_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "faiss.loader": {"level": "WARNING"},  # it narrates every CPU-feature probe at INFO
        # omm.access logs every request already; Django's own request logger would repeat 4xx.
        "django.request": {"level": "ERROR"},
        "omm.access": {"level": env.str("OMM_ACCESS_LOG_LEVEL", default="INFO")},
    },
}

"""Settings for the test suite: PostgreSQL and Redis as in production.

Reads TEST_DATABASE_URL / TEST_REDIS_URL (with the shared services on this machine as
defaults) before the main settings module reads DATABASE_URL / REDIS_URL.

Each pytest process gets its own test database, Celery queue, cache prefix and var folder
(suffixed with its pid), so two runs on one machine never disturb each other.
"""

import os

RUN_ID = os.environ.get("BROKERLINK_TEST_RUN_ID") or str(os.getpid())
# pytest-xdist: each worker inherits the controller's environment; give it its own run.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if WORKER and not RUN_ID.endswith(f"_{WORKER}"):
    RUN_ID = f"{RUN_ID}_{WORKER}"
    for name in ("BROKERLINK_VAR_DIR", "CELERY_QUEUE", "CACHE_KEY_PREFIX"):
        os.environ.pop(name, None)
os.environ["BROKERLINK_TEST_RUN_ID"] = RUN_ID

os.environ["DATABASE_URL"] = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("DJANGO_ENV", "development")
# A fixed test key; tests that need a missing or wrong key override settings per test.
os.environ.setdefault("TOKEN_ENCRYPTION_KEYS", "t1:" + "A" * 43)
os.environ.setdefault("BROKERLINK_VAR_DIR", f"/tmp/brokerlink-test-{RUN_ID}")  # noqa: S108 (a private per-run folder)
os.environ.setdefault("CELERY_QUEUE", f"brokerlink-test-{RUN_ID}")
os.environ.setdefault("CACHE_KEY_PREFIX", f"test{RUN_ID}")
# Every server a test starts answers from 127.0.0.1, so the per-address limit on failed API
# authentications would carry one test's refusals (the schema tests send many on purpose) into the
# next; tests/api/test_auth_hardening.py sets a small limit where it is the subject.
os.environ.setdefault("API_AUTH_FAILURES_PER_MINUTE", "100000")

from config.settings import *  # noqa: E402,F403

DATABASES["default"]["TEST"] = {"NAME": f"test_brokerlink_{RUN_ID}"}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# cache.clear() in a test deletes this run's keys, not the Redis database every run shares.
if CACHES["default"]["BACKEND"] == "ops.cache.TolerantRedisCache":  # noqa: F405
    CACHES["default"]["BACKEND"] = "tests.cache.RunOwnRedisCache"  # noqa: F405

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from ops import health
from ops.models import ServiceHeartbeat
from tests.support import with_second_factor

# The checks run in their own threads (own database connections): rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


TOKEN = "hc-token-123"


@pytest.fixture(autouse=True)
def fresh_report(settings):
    settings.HEALTH_CHECK_TOKEN = TOKEN
    settings.HEALTH_CACHE_SECONDS = 0  # each test sees fresh checks unless it asks for the cache
    health.health_cache_clear()
    yield
    health.health_cache_clear()


@pytest.fixture
def operator():
    """A monitor holding HEALTH_CHECK_TOKEN: it sees every service's details."""
    from django.test import Client

    return Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


def beat_and_worker_alive(age_seconds=0):
    at = timezone.now() - timedelta(seconds=age_seconds)
    ServiceHeartbeat.objects.create(kind="worker", name="w1@host", last_seen_at=at)
    ServiceHeartbeat.objects.create(kind="beat", name="host:1", last_seen_at=at)


def test_liveness_answers_with_the_database_the_cache_and_every_check_unreachable(client, settings, monkeypatch):
    """/health/ says the process answers and nothing else: with the database on a port nobody
    listens on, a cache that raises on any use and every readiness check booby-trapped, it still
    answers 200 {"status": "ok"}."""

    def consulted(*args, **kwargs):
        raise AssertionError("liveness consulted a readiness check")

    for name in ("check_database", "check_redis", "check_broker", "check_workers", "check_beat", "health_report"):
        monkeypatch.setitem(health.__dict__, name, consulted)
    settings.CACHES = {  # not the tolerant cache: any use of this one raises
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    database = connections["default"]
    database.close()
    port = database.settings_dict.get("PORT")
    database.settings_dict["PORT"] = "1"
    try:
        response = client.get("/health/")
    finally:
        database.settings_dict["PORT"] = port
        database.close()
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_is_healthy_with_every_service_up(operator):
    beat_and_worker_alive()
    response = operator.get("/health/ready/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert set(body["services"]) == {"database", "redis", "workers", "beat"}
    assert body["services"]["workers"]["data"]["alive"] == ["w1@host"]


def test_ready_is_degraded_not_503_when_workers_and_beat_are_stale(operator):
    beat_and_worker_alive(age_seconds=120)
    response = operator.get("/health/ready/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert not body["services"]["workers"]["ok"] and not body["services"]["beat"]["ok"]
    assert body["services"]["database"]["ok"]


def test_markers_do_not_count_as_workers(client):
    ServiceHeartbeat.objects.create(kind="worker", name="marker:x", last_seen_at=timezone.now())
    assert client.get("/health/service/workers/").status_code == 503


def test_database_down_is_unhealthy_503(operator, settings):
    beat_and_worker_alive()
    settings.DATABASES["default"]["PORT"] = "1"  # nothing listens there; the request thread keeps its own connection
    try:
        response = operator.get("/health/ready/")
    finally:
        settings.DATABASES["default"]["PORT"] = ""
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert not response.json()["services"]["database"]["ok"]


def test_a_hanging_check_times_out_alone_and_the_others_still_answer(operator, settings, monkeypatch):
    beat_and_worker_alive()
    settings.HEALTH_CHECK_TIMEOUT_SECONDS = 0.5
    released = threading.Event()
    monkeypatch.setitem(health.__dict__, "check_redis", lambda: released.wait(60))  # hangs until the test ends
    try:
        response = operator.get("/health/ready/")
    finally:
        released.set()
    body = response.json()
    assert response.status_code == 200 and body["status"] == "degraded"
    assert "timed out" in body["services"]["redis"]["detail"]
    assert body["services"]["database"]["ok"]


def test_service_endpoint(operator):
    beat_and_worker_alive()
    assert operator.get("/health/service/database/").json()["ok"] is True
    assert operator.get("/health/service/redis/").status_code == 200
    assert operator.get("/health/service/beat/").status_code == 200
    assert operator.get("/health/service/nonsense/").status_code == 404
    assert operator.get("/health/service/broker/").status_code == 404  # Redis is configured here


def test_embedded_broker_check(operator, settings, tmp_path):
    settings.REDIS_URL = ""
    settings.CELERY_EMBEDDED_BROKER_DIR = tmp_path / "broker"
    assert operator.get("/health/service/broker/").status_code == 503
    (tmp_path / "broker").mkdir()
    assert operator.get("/health/service/broker/").json()["ok"] is True
    assert operator.get("/health/service/redis/").status_code == 404


def test_ready_is_cached_and_forced_check_bypasses_it(client, settings, django_user_model):
    settings.HEALTH_CACHE_SECONDS = 60
    assert client.get("/health/ready/").json()["status"] == "degraded"
    beat_and_worker_alive()
    assert client.get("/health/ready/").json()["status"] == "degraded"  # cached

    assert client.post("/health/check/").status_code == 403
    assert client.post("/health/check/", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    forced = client.post("/health/check/", HTTP_AUTHORIZATION="Bearer hc-token-123")
    assert forced.status_code == 200 and forced.json()["status"] == "healthy"
    assert client.get("/health/ready/").json()["status"] == "healthy"


def test_forced_check_by_staff_session_needs_csrf(settings, django_user_model):
    from django.test import Client

    staff = django_user_model.objects.create_user(email="ops@example.com", password="pw-ops-123", is_staff=True)
    with_second_factor(staff)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    assert browser.post("/health/check/").status_code == 403
    browser.get("/health/")  # no CSRF cookie from here; fetch one the way a page would
    from django.middleware.csrf import _get_new_csrf_string

    token = _get_new_csrf_string()
    browser.cookies["csrftoken"] = token
    assert browser.post("/health/check/", HTTP_X_CSRFTOKEN=token).status_code == 200

    plain = django_user_model.objects.create_user(email="u@example.com", password="pw-u-123")
    other = Client()
    other.force_login(plain)
    assert other.post("/health/check/").status_code == 403


def test_anonymous_callers_get_the_status_only(client, operator, settings):
    """Security finding 2: no host names, no exception text for anonymous callers."""
    beat_and_worker_alive()
    ready = client.get("/health/ready/").json()
    assert ready == {"status": "healthy"}
    assert client.get("/health/service/workers/").json() == {"name": "workers", "ok": True}
    assert "w1@host" not in client.get("/health/service/workers/").content.decode()
    assert operator.get("/health/service/workers/").json()["data"]["alive"] == ["w1@host"]


def test_failure_text_is_logged_not_returned(operator, settings, captured_logs):
    settings.REDIS_URL = "redis://:s3cret-pw@127.0.0.1:1/0"  # nothing listens on port 1
    body = operator.get("/health/service/redis/").json()
    assert body["ok"] is False
    assert "127.0.0.1" not in body["detail"] and "Error" in body["detail"] and "see the logs" in body["detail"]
    assert "ops.health.check_failed" in captured_logs


def test_service_results_are_cached(client, settings):
    settings.HEALTH_CACHE_SECONDS = 60
    assert client.get("/health/service/workers/").status_code == 503
    beat_and_worker_alive()
    assert client.get("/health/service/workers/").status_code == 503  # cached
    health.health_cache_clear()
    assert client.get("/health/service/workers/").status_code == 200

"""Stopping and starting real services: a private Redis and a private PostgreSQL, never the shared ones."""

import subprocess

import pytest
import requests
from django.utils import timezone

from ops.models import ServiceHeartbeat
from tests.support import PYTHON, ROOT, free_port, running, subprocess_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def serve(env):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        PYTHON,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return base, running(cmd, env=env, ready_url=f"{base}/health/", log_name="app")


def ready(base):
    response = requests.get(f"{base}/health/ready/", headers={"Authorization": "Bearer outage-token"}, timeout=10)
    return response.status_code, response.json()


def test_redis_down_degrades_readiness_while_pages_still_serve(private_redis):
    now = timezone.now()
    ServiceHeartbeat.objects.create(kind="worker", name="w1@host", last_seen_at=now)
    ServiceHeartbeat.objects.create(kind="beat", name="host:1", last_seen_at=now)
    base, server = serve(subprocess_env(REDIS_URL=private_redis.url, HEALTH_CACHE_SECONDS="0",
                                        HEALTH_CHECK_TOKEN="outage-token"))
    with server:
        status, body = ready(base)
        assert (status, body["status"]) == (200, "healthy"), body

        private_redis.stop()
        status, body = ready(base)
        assert (status, body["status"]) == (200, "degraded"), body
        assert body["services"]["redis"]["ok"] is False
        assert body["services"]["database"]["ok"] is True
        assert requests.get(f"{base}/health/service/redis/", timeout=10).status_code == 503
        # Pages keep working, including one whose rate limiter uses the cache.
        session = requests.Session()
        login = session.get(f"{base}/accounts/login/", timeout=10)
        assert login.status_code == 200
        attempt = session.post(
            f"{base}/accounts/login/",
            data={
                "login": "nobody@example.com",
                "password": "wrong",
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": f"{base}/accounts/login/"},
            timeout=10,
        )
        assert attempt.status_code == 200  # the form with its error, not a 500 or a 429

        private_redis.start()
        wait_for(lambda: ready(base)[1]["status"] == "healthy", timeout=20, what="healthy after Redis returns")


def test_postgres_restart_causes_no_error_page(private_postgres, django_user_model):
    env = subprocess_env(DATABASE_URL=private_postgres.url, HEALTH_CACHE_SECONDS="0", DB_CONN_MAX_AGE="600")
    migrate = subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    create = subprocess.run(
        [PYTHON, "manage.py", "ensure_demo_user", "--email", "person@example.com", "--password", "pw-person-123"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert create.returncode == 0, create.stderr[-3000:]

    base, server = serve(env)
    with server:
        browser = requests.Session()
        browser.get(f"{base}/accounts/login/", timeout=10)
        browser.post(
            f"{base}/accounts/login/",
            data={"login": "person@example.com", "password": "pw-person-123",
                  "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            headers={"Referer": f"{base}/accounts/login/"}, timeout=10,
        )
        # Pages that read the session and the user from the database, on persistent connections.
        for _ in range(3):
            assert browser.get(f"{base}/connections/", timeout=10, allow_redirects=False).status_code == 200

        private_postgres.stop()
        status, body = ready(base)
        assert (status, body["status"]) == (503, "unhealthy")

        private_postgres.start()  # pg_ctl -w: accepting connections when it returns
        # The first request after PostgreSQL is back: health-checked connections reconnect, no error page.
        first = browser.get(f"{base}/connections/", timeout=10, allow_redirects=False)
        assert first.status_code == 200, first.text[:500]
        assert ready(base)[0] == 200

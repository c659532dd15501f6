"""Production mode: refuses to start without its secrets, passes `check --deploy`, and is
served by gunicorn with uvicorn workers and WhiteNoise static files."""

import re
import subprocess

import pytest
import requests

from tests.support import PYTHON, ROOT, free_port, running, subprocess_env

SECRET_KEY = "prod-test-" + "k9Xq2LmP7vR4tW8zB3nH6jD1fG5sA0cE" * 2


def production_env(tmp_path, **overrides):
    env = subprocess_env(
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        SITE_URL="https://brokerlink.example.com",
        BROKERLINK_VAR_DIR=str(tmp_path),
        DJANGO_DEBUG="",
    )
    env.update(overrides)
    return env


def manage(env, *args, timeout=120):
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_check_deploy_passes_with_no_warnings(tmp_path, transactional_db):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    "variable", ["DJANGO_SECRET_KEY", "TOKEN_ENCRYPTION_KEYS", "DJANGO_ALLOWED_HOSTS", "SITE_URL"]
)
def test_missing_production_secret_refuses_to_start_naming_it(tmp_path, variable, transactional_db):
    env = production_env(tmp_path)
    env.pop(variable)
    result = manage(env, "check")
    assert result.returncode != 0
    assert f"{variable} is not set" in result.stderr


@pytest.mark.slow
def test_gunicorn_serves_health_and_static_files_in_production(tmp_path, transactional_db):
    env = production_env(tmp_path, LOG_FORMAT="json", TRUST_X_FORWARDED_PROTO="1")  # the proxy in front
    collected = manage(env, "collectstatic", "--noinput")
    assert collected.returncode == 0, collected.stderr
    port = free_port()
    cmd = [
        PYTHON,
        "-m",
        "gunicorn",
        "config.asgi:application",
        "-k",
        "uvicorn_worker.UvicornWorker",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--graceful-timeout",
        "5",
    ]
    base = f"http://127.0.0.1:{port}"
    with running(cmd, env=env, ready_url=f"{base}/health/", log_name="gunicorn"):
        live = requests.get(f"{base}/health/", timeout=5, allow_redirects=False)
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        assert live.headers["X-Request-ID"]

        # Everything but /health/ and /metrics redirects plain HTTP to HTTPS...
        assert requests.get(f"{base}/static/css/app.css", timeout=5, allow_redirects=False).status_code == 301
        # ...and behind the TLS-terminating proxy WhiteNoise serves the file with a long cache on hashed names.
        https = {"X-Forwarded-Proto": "https"}
        static = requests.get(f"{base}/static/css/app.css", headers=https, timeout=5, allow_redirects=False)
        assert static.status_code == 200, static.text[:200]
        assert "text/css" in static.headers["Content-Type"]
        page = requests.get(f"{base}/accounts/login/", headers=https, timeout=5, allow_redirects=False)
        assert page.status_code == 200
        # Pages link the manifest's hashed names (kept per process after the first lookup: the
        # same on every page), and those are served.
        hashed = re.findall(r'/static/css/app\.[0-9a-f]{12}\.css', page.text)
        again = requests.get(f"{base}/accounts/login/", headers=https, timeout=5, allow_redirects=False)
        assert hashed and hashed == re.findall(r'/static/css/app\.[0-9a-f]{12}\.css', again.text)
        assert requests.get(f"{base}{hashed[0]}", headers=https, timeout=5).status_code == 200
        assert "Strict-Transport-Security" in page.headers
        assert "Secure" in page.headers.get("Set-Cookie", "Secure")
        # The pretend broker is off in production unless SANDBOX_ENABLED says otherwise.
        sandbox = requests.get(f"{base}/sandbox/.well-known/oauth-authorization-server", headers=https, timeout=5)
        assert sandbox.status_code == 404


def test_production_needs_an_https_site_url_and_trusts_no_proxy_header_by_default(tmp_path, transactional_db):
    """Security finding 13: SITE_URL https and required; X-Forwarded-Proto trusted only when configured."""
    plain = manage(production_env(tmp_path, SITE_URL="http://brokerlink.example.com"), "check")
    assert plain.returncode != 0 and "SITE_URL must be an https:// URL" in plain.stderr
    show = "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"
    default = manage(production_env(tmp_path), "shell", "-c", show)
    assert default.stdout.strip().splitlines()[-1] == "None", default.stderr
    trusted = manage(production_env(tmp_path, TRUST_X_FORWARDED_PROTO="1"), "shell", "-c", show)
    assert "HTTP_X_FORWARDED_PROTO" in trusted.stdout


def test_deploy_check_refuses_the_outbound_development_switch(tmp_path, transactional_db):
    """Security finding 3: plain http to loopback is a development switch, never a production setting."""
    result = manage(production_env(tmp_path, OUTBOUND_ALLOW_LOOPBACK_HTTP="1"), "check", "--deploy",
                    "--fail-level", "WARNING")
    assert result.returncode != 0 and "brokers.W002" in result.stdout + result.stderr

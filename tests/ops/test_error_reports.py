"""Django error reports (the debug page and admin emails) never carry a token, a client
secret, or an OAuth callback's code and state."""

import sys

import pytest
from django.test import RequestFactory, override_settings

from brokers.models import BrokerApp
from brokers.registry import get_profile
from connections import broker_client
from connections.errors import BrokerError
from ops.reporting import RedactingExceptionReporter
from tests.support import free_port

REFRESH_TOKEN = "rt-5ecret-refresh-value-0123456789"
CLIENT_SECRET = "cs-5ecret-client-value-0123456789"
CODE = "code-5ecret-authorization-0123456789"
STATE = "state-5ecret-value-0123456789"


@pytest.fixture
def failed_refresh(settings):
    """A real refresh against a closed port, failing inside broker_client with the secrets in its frames."""
    settings.SANDBOX_BASE_URL = f"http://127.0.0.1:{free_port()}"
    app = BrokerApp(broker_slug="sandbox", environment="paper", client_id="client-1")
    app.client_secret = CLIENT_SECRET
    try:
        broker_client.token_refresh(get_profile("sandbox"), app, REFRESH_TOKEN, timeout=1)
    except BrokerError:
        return sys.exc_info()
    pytest.fail("a refresh against a closed port must fail")


@pytest.mark.parametrize("render", ["get_traceback_text", "get_traceback_html"])
@override_settings(DEBUG=False)
def test_error_report_hides_tokens_secrets_code_and_state(failed_refresh, render):
    request = RequestFactory().get(f"/connections/callback/sandbox/?code={CODE}&state={STATE}")
    report = getattr(RedactingExceptionReporter(request, *failed_refresh), render)()
    assert "BrokerError" in report and "token_refresh" in report  # a real report, with the frames
    for secret in (REFRESH_TOKEN, CLIENT_SECRET, CODE, STATE):
        assert secret not in report


def test_the_app_uses_the_redacting_reporter(settings):
    assert settings.DEFAULT_EXCEPTION_REPORTER == "ops.reporting.RedactingExceptionReporter"


@pytest.mark.parametrize("render", ["get_traceback_text", "get_traceback_html"])
def test_debug_pages_and_error_mails_hide_passwords_in_service_urls(failed_refresh, render, settings):
    """Security finding 10: DATABASE_URL, REDIS_URL, CELERY_BROKER_URL and cache LOCATION carry passwords."""
    settings.DEBUG = True  # the debug page shows every setting
    settings.DATABASE_URL = "postgres://brokerlink:db-pw-5ecret@db.internal:5432/brokerlink"
    settings.REDIS_URL = "redis://:redis-pw-5ecret@cache.internal:6379/0"
    settings.CELERY_BROKER_URL = "redis://:celery-pw-5ecret@cache.internal:6379/1"
    settings.CACHES = {**settings.CACHES, "extra": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                                    "LOCATION": "redis://:location-pw-5ecret@cache.internal/2"}}
    request = RequestFactory().get("/connections/")
    report = getattr(RedactingExceptionReporter(request, *failed_refresh), render)()
    assert "DATABASE_URL" in report  # the settings are listed, their values hidden
    for secret in ("db-pw-5ecret", "redis-pw-5ecret", "celery-pw-5ecret", "location-pw-5ecret"):
        assert secret not in report


def test_logged_urls_lose_their_password():
    from ops.logging import redact

    assert redact("connect to redis://:pw-5ecret@cache:6379/0 failed") == (
        "connect to redis://:[redacted]@cache:6379/0 failed"
    )

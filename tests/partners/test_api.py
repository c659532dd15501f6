"""The connect-session API in process: who may call it, its limits, its schema."""

from __future__ import annotations

import pytest

from api.models import ApiAuditEntry, Scope
from api.services import service_key_create
from brokers.models import BrokerApp
from partners.models import ConnectSession
from partners.services import partner_app_create

pytestmark = pytest.mark.django_db

RETURN = "https://tracker.example/done"


@pytest.fixture(autouse=True)
def sandbox_configured():
    app = BrokerApp(broker_slug="sandbox", environment="paper", client_id="client-1")
    app.client_secret = "secret-1"
    app.save()


@pytest.fixture
def tracker():
    return partner_app_create(name="Tracker", return_urls=[RETURN])


def call(client, key: str, body: dict):
    return client.post(
        "/api/v1/connect-sessions", body, content_type="application/json", headers={"Authorization": f"Bearer {key}"}
    )


def test_session_creation_needs_an_app_key_with_the_scope(client, tracker):
    _k, operator = service_key_create(name="ops", scopes=[Scope.CONNECT_SESSIONS])
    _k, no_scope = service_key_create(name="t1", scopes=[Scope.READ_STATUS], app=tracker)
    _k, good = service_key_create(name="t2", scopes=[Scope.CONNECT_SESSIONS], app=tracker)
    body = {"end_user": {"id": "u-1"}, "brokers": ["sandbox"], "return_url": RETURN}
    assert call(client, operator, body).status_code == 403
    assert call(client, no_scope, body).status_code == 403
    created = call(client, good, body)
    assert created.status_code == 201, created.content
    out = created.json()
    assert out["url"].startswith("http") and "/connect/s/" in out["url"] and out["end_user_id"] == "u-1"
    assert out["reconnect"] is False and out["expires_at"]
    assert ConnectSession.objects.get().return_url == RETURN
    assert call(client, good, {"brokers": ["sandbox"]}).status_code == 400
    assert call(client, good, {"end_user": {"id": "u-1"}, "environment": "moon"}).status_code == 400


def test_session_creation_is_rate_limited_per_key(client, tracker, settings):
    settings.CONNECT_SESSIONS_PER_MINUTE = 2
    _k, first = service_key_create(name="a", scopes=[Scope.CONNECT_SESSIONS], app=tracker)
    key_b, second = service_key_create(name="b", scopes=[Scope.CONNECT_SESSIONS], app=tracker)
    body = {"end_user": {"id": "u-1"}}
    statuses = [call(client, first, body).status_code for _ in range(3)]
    assert statuses[:2] == [201, 201] and statuses[2] == 429
    limited = call(client, first, body)
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert call(client, second, body).status_code == 201  # another key has its own budget
    assert ApiAuditEntry.objects.filter(action="session_create", status_code=429).exists()
    assert not ApiAuditEntry.objects.filter(key=key_b, status_code=429).exists()


def test_the_schema_documents_the_partner_operations(client):
    schema = client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/connect-sessions", "/api/v1/end-users/{end_user_id}/disconnect",
                 "/api/v1/end-users/{end_user_id}", "/api/v1/connections/{connection_id}/disconnect"):
        assert path in schema["paths"], path
    listing = schema["paths"]["/api/v1/connections"]["get"]
    assert "end_user_id" in {p["name"] for p in listing["parameters"]}

"""The HTTP API over real HTTP: brokerlink under uvicorn with the sandbox broker mounted, a
service outside it calling with a service key."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import requests
from django.utils import timezone

from api.models import ApiAuditEntry, Scope
from api.services import service_key_revoke
from connections.models import ConnectionEvent
from tests.api.conftest import expire_at_the_broker, server_log_text
from tests.engine.history import stored_checks


def test_a_key_reads_status_and_lists_connections(api_client, connection):
    client = api_client(scopes=[Scope.READ_STATUS])
    one = client.get(f"connections/{connection.pk}")
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["id"] == str(connection.pk) and body["status"] == "connected" and body["needs_reauth"] is False
    assert body["broker"] == "sandbox" and body["user_email"] == "ada@example.com"
    assert connection.access_token not in one.text and connection.refresh_token not in one.text

    listed = client.get("connections", params={"broker": "sandbox", "status": "connected"})
    assert [c["id"] for c in listed.json()] == [str(connection.pk)]
    assert client.get("connections", params={"status": "needs_reauth"}).json() == []
    entry = ApiAuditEntry.objects.filter(key=client.service_key, action="status").get()
    assert entry.connection_id == connection.pk and entry.status_code == 200


def test_the_proxy_refreshes_on_401_and_retries_and_the_token_never_leaves(api_client, connection, stack,
                                                                          sandbox_app):
    _, sandbox_client = sandbox_app
    client = api_client(scopes=[Scope.CALL])
    old_token = connection.access_token
    expire_at_the_broker(stack.sandbox, sandbox_client["client_id"])
    before = stack.sandbox.counters(sandbox_client["client_id"])

    answer = client.get(f"connections/{connection.pk}/proxy/v1/account")

    after = stack.sandbox.counters(sandbox_client["client_id"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["account_number"].endswith(connection.account_number_masked[-4:])
    # Seen at the broker: the call, one refresh, the retry.
    assert after["account_calls"] - before["account_calls"] == 2
    assert after["refreshes"] - before["refreshes"] == 1
    connection.refresh_from_db()
    new_token = connection.access_token
    assert new_token != old_token
    assert connection.events.filter(kind=ConnectionEvent.Kind.REFRESHED).count() == 1
    # The token never leaves brokerlink: not in the answer, not in its logs.
    for token in (old_token, new_token, connection.refresh_token):
        assert token not in answer.text and token not in str(answer.headers)
        assert token not in server_log_text()
    # Audited; kept apart from the heartbeat's history (an integration's call is not a check).
    entry = ApiAuditEntry.objects.get(key=client.service_key, action="proxy")
    assert entry.connection_id == connection.pk and entry.status_code == 200
    assert entry.path == f"/api/v1/connections/{connection.pk}/proxy/v1/account"
    assert re.match(r"sandbox answered HTTP 200 in \d+ ms\.", entry.result)
    assert stored_checks(connection) == []


def test_the_broker_answers_are_passed_on_as_they_are(api_client, connection):
    client = api_client(scopes=[Scope.CALL])
    missing = client.get(f"connections/{connection.pk}/proxy/v1/no-such-endpoint")
    assert missing.status_code == 404
    outside = client.get(f"connections/{connection.pk}/proxy/v1/../../admin/")
    assert outside.status_code in (400, 404)


def test_refused_outside_its_scopes_and_its_brokers_and_audited(api_client, connection):
    status_only = api_client(scopes=[Scope.READ_STATUS], name="dashboard")
    proxied = status_only.get(f"connections/{connection.pk}/proxy/v1/account")
    assert proxied.status_code == 403 and "broker:call" in proxied.json()["detail"]
    token = status_only.get(f"connections/{connection.pk}/token")
    assert token.status_code == 403 and "tokens:read" in token.json()["detail"]
    assert connection.access_token not in token.text

    other_broker = api_client(broker_slugs=["alpaca"], name="alpaca-only")
    assert other_broker.get(f"connections/{connection.pk}").status_code == 404
    assert other_broker.get(f"connections/{connection.pk}/proxy/v1/account").status_code == 404
    assert other_broker.get("connections").json() == []

    refused = ApiAuditEntry.objects.filter(status_code__in=(403, 404)).order_by("created_at", "id")
    assert [(e.key_name, e.action, e.status_code) for e in refused] == [
        ("dashboard", "proxy", 403), ("dashboard", "token", 403),
        ("alpaca-only", "status", 404), ("alpaca-only", "proxy", 404),
    ]
    assert all(e.connection_id == connection.pk for e in refused)


def test_the_token_endpoint_hands_out_a_fresh_token_and_audits_it(api_client, connection):
    client = api_client(scopes=[Scope.READ_TOKENS])
    answer = client.get(f"connections/{connection.pk}/token")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    connection.refresh_from_db()
    assert body["access_token"] == connection.access_token and body["token_type"] == "Bearer"
    assert body["api_base_url"].endswith("/sandbox")
    entry = ApiAuditEntry.objects.get(key=client.service_key, action="token")
    assert entry.connection_id == connection.pk and entry.status_code == 200
    assert connection.access_token not in entry.result


def test_check_and_refresh_through_the_api(api_client, connection, stack, sandbox_app):
    _, sandbox_client = sandbox_app
    client = api_client()
    before = stack.sandbox.counters(sandbox_client["client_id"])
    checked = client.post(f"connections/{connection.pk}/check")
    assert checked.status_code == 200 and checked.json()["status"] == "connected"
    refreshed = client.post(f"connections/{connection.pk}/refresh")
    assert refreshed.status_code == 200
    after = stack.sandbox.counters(sandbox_client["client_id"])
    assert after["account_calls"] - before["account_calls"] == 1
    assert after["refreshes"] - before["refreshes"] == 1

    stack.sandbox.set_faults(sandbox_client["client_id"], refresh_invalid_grant=True)
    dead = client.post(f"connections/{connection.pk}/refresh")
    assert dead.status_code == 409 and "needs re-authentication" in dead.json()["detail"]
    assert client.get(f"connections/{connection.pk}").json()["needs_reauth"] is True
    gone = client.get(f"connections/{connection.pk}/token")
    assert gone.status_code == 409 and "needs re-authentication" in gone.json()["detail"]


def test_revoked_expired_and_unknown_keys_get_401(api_client, connection):
    revoked = api_client()
    assert revoked.get(f"connections/{connection.pk}").status_code == 200
    service_key_revoke(revoked.service_key)
    expired = api_client(expires_at=timezone.now() - timedelta(seconds=1))
    wrong = api_client()
    wrong.key = wrong.key[:-4] + "AAAA"
    for client in (revoked, expired, wrong):
        for path in (f"connections/{connection.pk}", f"connections/{connection.pk}/proxy/v1/account",
                     f"connections/{connection.pk}/token"):
            answer = client.get(path)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(f"{revoked.base_url}/api/v1/connections", timeout=10).status_code == 401


def test_each_key_is_rate_limited(api_client, connection):
    # The limit counts in fixed one-minute windows (common/ratelimit.py): a burst that a
    # window's start cuts in two is retried with a fresh key.
    for _ in range(3):
        client = api_client(rate_limit_per_minute=3)
        window = int(time.time() // 60)
        statuses = [client.get(f"connections/{connection.pk}").status_code for _ in range(4)]
        if int(time.time() // 60) == window:
            break
    assert statuses == [200, 200, 200, 429]
    limited = client.get(f"connections/{connection.pk}")
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert api_client().get(f"connections/{connection.pk}").status_code == 200  # other keys are not affected
    assert ApiAuditEntry.objects.filter(key=client.service_key, action="rate_limited").count() == 2


def test_the_schema_and_docs_are_served_without_a_cdn(stack):
    schema = requests.get(f"{stack.url}/api/v1/openapi.json", timeout=10).json()
    assert "/api/v1/connections/{connection_id}/proxy/{path}" in schema["paths"]
    assert "/api/v1/connections/{connection_id}/token" in schema["paths"]
    docs = requests.get(f"{stack.url}/api/v1/docs", timeout=10)
    assert docs.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', docs.text)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    assert "cdn" not in docs.text.lower()
    for asset in assets:
        assert requests.get(f"{stack.url}{asset}", timeout=10).status_code == 200

"""After the code exchange, every failure hands the tokens back to the broker and says what was
wrong. Real HTTP to the standalone sandbox; the callback's service runs in this process."""

import time
from dataclasses import replace

import pytest

from brokers.models import BrokerApp
from brokers.profiles import sandbox as sandbox_profile
from connections import broker_client
from connections.errors import UNEXPECTED, BrokerError
from connections.models import Connection
from connections.oauth_flow import PURPOSE_CONNECT, PendingFlow
from connections.services import connect
from connections.services.connect import connection_authorize_complete
from connections.services.failures import ConnectFailed
from tests.fixtures.sandbox import DEFAULT_REDIRECT_URI, pkce_pair


@pytest.fixture
def sandbox_server(shared_sandbox):
    return shared_sandbox


@pytest.fixture
def handback(sandbox_server, monkeypatch):
    """make(profile_changes, client_fields, **authorize params) -> (flow, code, client)."""

    def make(*, profile_changes=None, client_fields=None, **params):
        client = sandbox_server.create_client(rotate_refresh=True, **(client_fields or {}))
        app = BrokerApp(broker_slug="sandbox", environment="paper", client_id=client["client_id"])
        app.client_secret = client["client_secret"]
        app.save()
        profile = replace(sandbox_profile.build_profile(sandbox_server.url), **(profile_changes or {}))
        monkeypatch.setattr(broker_client, "profile_for", lambda slug, environment="live": profile)
        verifier, challenge = pkce_pair()
        result = sandbox_server.browser().authorize(client, code_challenge=challenge, **params)
        assert result.code, result
        flow = PendingFlow(
            state="s", slug="sandbox", app_id=str(app.pk), environment="paper", purpose=PURPOSE_CONNECT,
            redirect_uri=DEFAULT_REDIRECT_URI, created_at=time.time(), code_verifier=verifier,
        )
        return flow, result.code, client

    return make


def last_grant(sandbox_server, client) -> dict:
    return sandbox_server.counters(client["client_id"])["grants"][-1]


def test_a_malformed_token_answer_found_while_storing_hands_the_tokens_back(handback, sandbox_server, user,
                                                                            monkeypatch):
    flow, code, client = handback(scope="read")

    def reject(**kwargs):  # what connections.tokens.token_response_clean raises
        raise BrokerError(UNEXPECTED, "Sandbox Broker sent a token_type with control characters.")

    monkeypatch.setattr(connect, "connection_apply_token_response", reject)
    with pytest.raises(ConnectFailed) as info:
        connection_authorize_complete(user=user, flow=flow, code=code)
    assert info.value.code == "unexpected_response"
    assert "control characters" in info.value.detail
    grant = last_grant(sandbox_server, client)
    assert grant["revoked"] and grant["revoked_reason"] == "revoked_by_client"
    assert not Connection.objects.exists()


def test_any_exception_after_the_exchange_hands_the_tokens_back(handback, sandbox_server, user, monkeypatch):
    flow, code, client = handback(scope="read")

    def crash(**kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(connect, "connection_apply_token_response", crash)
    with pytest.raises(ConnectFailed) as info:
        connection_authorize_complete(user=user, flow=flow, code=code)
    assert info.value.code == "internal_error"
    assert "(KeyError)" in info.value.detail
    assert last_grant(sandbox_server, client)["revoked"]


def test_json_without_an_account_id_is_named_precisely_and_handed_back(handback, sandbox_server, user):
    flow, code, client = handback(profile_changes={"heartbeat_path": "/.well-known/openid-configuration"})
    with pytest.raises(ConnectFailed) as info:
        connection_authorize_complete(user=user, flow=flow, code=code)
    assert info.value.code == "identity_missing"
    assert "HTML" not in info.value.failure.what_happened
    assert "JSON that names no account" in info.value.detail
    assert "authorization_endpoint" in info.value.detail  # the fields it did find
    assert last_grant(sandbox_server, client)["revoked"]


def test_offline_access_not_granted_is_refused_and_handed_back(handback, sandbox_server, user):
    # An OIDC provider drops offline_access without prompt=consent (here: the request had none).
    flow, code, client = handback(
        profile_changes={"scopes": ("openid", "offline_access")},
        client_fields={"oidc": True},
        scope="openid offline_access",
    )
    with pytest.raises(ConnectFailed) as info:
        connection_authorize_complete(user=user, flow=flow, code=code)
    assert info.value.code == "offline_access_denied"
    assert "without offline_access" in info.value.detail
    assert last_grant(sandbox_server, client)["revoked"]

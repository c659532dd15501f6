"""Authorization and token failures, as a client sees them over HTTP."""

from tests.fixtures.sandbox import pkce_pair


def test_wrong_pkce_verifier_is_invalid_grant(make_flow):
    flow = make_flow()
    result, _ = flow.consent()
    wrong_verifier, _ = pkce_pair()
    response = flow.exchange(result.code, wrong_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_missing_pkce_is_refused_with_redirect(sandbox_server, make_flow):
    flow = make_flow()
    result = sandbox_server.browser().authorize(flow.client, state="s-9")
    assert result.status == 302
    assert result.params["error"] == "invalid_request"
    assert result.params["state"] == "s-9"


def test_unregistered_redirect_uri_is_not_followed(make_flow):
    flow = make_flow()
    result, _ = flow.consent(redirect_uri="http://127.0.0.1:9/callback/evil")
    assert result.status == 400
    assert result.location == ""
    assert "invalid_request" in result.body


def test_token_request_with_other_redirect_uri_is_invalid_grant(make_flow):
    flow = make_flow(redirect_uris=["http://127.0.0.1:9/callback", "http://127.0.0.1:9/other"])
    result, verifier = flow.consent()
    response = flow.exchange(result.code, verifier, redirect_uri="http://127.0.0.1:9/other")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_reused_code_is_refused_and_revokes_its_tokens(make_flow):
    flow = make_flow()
    result, verifier = flow.consent()
    first = flow.exchange(result.code, verifier)
    assert first.status_code == 200
    again = flow.exchange(result.code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert flow.account(first.json()["access_token"]).status_code == 401


def test_expired_code_is_refused(sandbox_server, make_flow):
    flow = make_flow()
    result, verifier = flow.consent()
    sandbox_server.set_faults(flow.client["client_id"], clock_offset_seconds=601)
    response = flow.exchange(result.code, verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_denied_consent_redirects_with_access_denied(sandbox_server, make_flow):
    flow = make_flow()
    result, _ = flow.consent(state="deny-me", decision="deny")
    assert result.status == 302
    assert result.location.startswith(flow.client["redirect_uris"][0])
    assert result.params["error"] == "access_denied"
    assert result.params["state"] == "deny-me"
    assert result.params["iss"] == sandbox_server.url
    assert "code" not in result.params


def test_reuse_of_rotated_refresh_token_revokes_the_grant(sandbox_server, make_flow):
    flow = make_flow(rotate_refresh=True)
    tokens = flow.connect()
    rotated = flow.refresh(tokens["refresh_token"]).json()
    replay = flow.refresh(tokens["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # The whole grant is gone: the new tokens die too.
    assert flow.account(rotated["access_token"]).status_code == 401
    assert flow.refresh(rotated["refresh_token"]).status_code == 400
    counters = sandbox_server.counters(flow.client["client_id"])
    assert counters["rotated_reuses"] == 1
    (grant,) = counters["grants"]
    assert grant["rotated_reuses"] == 1
    assert grant["revoked"] is True
    assert grant["revoked_reason"] == "rotated_reuse"


def test_expired_access_token_is_401(sandbox_server, make_flow):
    flow = make_flow(access_ttl=60)
    tokens = flow.connect()
    assert tokens["expires_in"] == 60
    sandbox_server.set_faults(flow.client["client_id"], clock_offset_seconds=61)
    response = flow.account(tokens["access_token"])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_unknown_access_token_is_401_json(sandbox_server, make_flow):
    flow = make_flow()
    response = flow.account("nope")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_refresh_ttl_expires_refresh_token(sandbox_server, make_flow):
    flow = make_flow(refresh_ttl=3600)
    tokens = flow.connect()
    sandbox_server.set_faults(flow.client["client_id"], clock_offset_seconds=3601)
    response = flow.refresh(tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_control_api_requires_the_token(sandbox_server):
    import requests

    response = requests.post(f"{sandbox_server.url}/control/api/clients", json={"name": "x"}, timeout=10)
    assert response.status_code == 403

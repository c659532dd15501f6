"""The whole OAuth dance against the standalone sandbox broker over real HTTP."""

import re

import pytest


def test_metadata_names_issuer_and_endpoints(sandbox_server):
    meta = sandbox_server.metadata()
    assert meta["issuer"] == sandbox_server.url
    assert meta["token_endpoint"] == f"{sandbox_server.url}/oauth/token"
    assert meta["revocation_endpoint"] == f"{sandbox_server.url}/oauth/revoke"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True


def test_full_dance_authorize_consent_token_account_refresh_revoke(sandbox_server, make_flow):
    flow = make_flow(rotate_refresh=True)
    cid = flow.client["client_id"]

    result, verifier = flow.consent(state="xyz-42", account_label="Margin ••5678")
    assert result.status == 302
    assert result.location.startswith(flow.client["redirect_uris"][0] + "?")
    assert result.params["state"] == "xyz-42"
    assert result.params["iss"] == sandbox_server.url

    response = flow.exchange(result.code, verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["refresh_token"]
    assert response.headers["Cache-Control"] == "no-store"

    account = flow.account(tokens["access_token"])
    assert account.status_code == 200
    body = account.json()
    assert body["masked_number"] == "••5678"
    assert body["label"] == "Margin ••5678"
    assert body["account_number"].endswith("5678")
    assert body["status"] == "ACTIVE"
    assert body["paper"] is True
    assert body["id"]

    refreshed = flow.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["access_token"] != tokens["access_token"]
    assert new["refresh_token"] != tokens["refresh_token"]
    assert flow.account(new["access_token"]).status_code == 200

    revoked = flow.revoke(new["refresh_token"], hint="refresh_token")
    assert revoked.status_code == 200
    gone = flow.account(new["access_token"])
    assert gone.status_code == 401
    assert gone.json()["error"] == "invalid_token"
    assert flow.refresh(new["refresh_token"]).json()["error"] == "invalid_grant"

    counters = sandbox_server.counters(cid)
    assert counters["codes_issued"] == 1
    assert counters["refreshes"] == 1
    assert counters["account_calls"] == 3
    assert counters["revocations"] == 1
    assert counters["token_requests"] == 3
    (grant,) = counters["grants"]
    assert grant["revoked"] is True
    assert grant["refreshes"] == 1
    assert grant["account"] == "Margin ••5678"


def test_account_answer_of_the_fast_path_has_the_django_answers_headers(make_flow):
    """A known token is answered without Django's handler (sandbox/asgi.py), an unknown one by
    Django: the headers a heartbeat sees are the same either way, the request id echoed."""
    import json

    flow = make_flow()
    access = flow.connect()["access_token"]
    fast = flow.http.get(
        f"{flow.server.url}/v1/account",
        headers={"Authorization": f"Bearer {access}", "X-Request-ID": "hb-42"},
        timeout=10,
    )
    django = flow.account("not-a-token")
    assert (fast.status_code, django.status_code) == (200, 401)
    assert fast.headers["Content-Type"] == "application/json"
    assert fast.content == json.dumps(fast.json()).encode()  # JsonResponse's encoding
    assert fast.headers["Content-Length"] == str(len(fast.content))
    assert fast.headers["X-Request-ID"] == "hb-42"
    assert re.fullmatch(r"[0-9a-f]{32}", flow.account(access).headers["X-Request-ID"])
    for name in ("X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy", "X-Frame-Options"):
        assert fast.headers[name] == django.headers[name], name


def test_revocation_of_unknown_token_is_200(make_flow):
    flow = make_flow()
    assert flow.revoke("not-a-token").status_code == 200


def test_revoking_access_token_leaves_refresh_usable(make_flow):
    flow = make_flow()
    tokens = flow.connect()
    assert flow.revoke(tokens["access_token"], hint="access_token").status_code == 200
    assert flow.account(tokens["access_token"]).status_code == 401
    refreshed = flow.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200
    assert flow.account(refreshed.json()["access_token"]).status_code == 200


def test_without_rotation_refresh_token_stays_the_same(make_flow):
    flow = make_flow()
    tokens = flow.connect()
    first = flow.refresh(tokens["refresh_token"]).json()
    assert "refresh_token" not in first
    second = flow.refresh(tokens["refresh_token"])
    assert second.status_code == 200


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_auth_method_is_enforced(make_flow, method):
    flow = make_flow(token_endpoint_auth_method=method)
    assert flow.connect()["access_token"]
    other = "client_secret_post" if method == "client_secret_basic" else "client_secret_basic"
    result, verifier = flow.consent()
    flow.client = {**flow.client, "token_endpoint_auth_method": other}
    wrong = flow.exchange(result.code, verifier)
    assert wrong.status_code in (400, 401)
    assert wrong.json()["error"] == "invalid_client"


def test_wrong_client_secret_is_invalid_client(make_flow):
    flow = make_flow()
    result, verifier = flow.consent()
    flow.client = {**flow.client, "client_secret": "nope"}
    response = flow.exchange(result.code, verifier)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"

"""The sandbox's OpenID Connect mode, as a spec-following OIDC provider behaves."""

import requests

from tests.fixtures.sandbox import pkce_pair


def _exchange(server, client, code, verifier):
    return requests.post(
        f"{server.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client["redirect_uris"][0],
            "code_verifier": verifier,
        },
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    ).json()


def _refresh(server, client, refresh_token):
    return requests.post(
        f"{server.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )


def test_discovery_userinfo_and_offline_access_only_with_prompt_consent(shared_sandbox):
    server = shared_sandbox
    config = requests.get(f"{server.url}/.well-known/openid-configuration", timeout=10).json()
    assert config["issuer"] == server.url
    assert config["userinfo_endpoint"] == f"{server.url}/oidc/userinfo"
    assert "authorization_response_iss_parameter_supported" not in config
    client = server.create_client(oidc=True, login_session_ttl=600, access_ttl=60)
    browser = server.browser()

    # Without prompt=consent, offline_access is silently dropped and no iss is sent.
    verifier, challenge = pkce_pair()
    result = browser.authorize(client, state="s1", code_challenge=challenge, scope="openid offline_access")
    assert result.code and "iss" not in result.params
    token = _exchange(server, client, result.code, verifier)
    assert token["scope"] == "openid"
    info = requests.get(
        f"{server.url}/oidc/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10
    )
    assert info.status_code == 200
    assert set(info.json()) == {"sub"}
    # The refresh token dies with the login session (jump past its 600 s).
    server.set_faults(client["client_id"], clock_offset_seconds=601)
    assert _refresh(server, client, token["refresh_token"]).json()["error"] == "invalid_grant"
    server.set_faults(client["client_id"], clock_offset_seconds=0)

    # With prompt=consent, offline_access is granted and the refresh token outlives the session.
    verifier, challenge = pkce_pair()
    result = browser.authorize(
        client, state="s2", code_challenge=challenge, scope="openid offline_access", prompt="consent"
    )
    token = _exchange(server, client, result.code, verifier)
    assert token["scope"] == "openid offline_access"
    server.set_faults(client["client_id"], clock_offset_seconds=3600)
    refreshed = _refresh(server, client, token["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    # A different sandbox login has a different subject.
    other = server.browser()
    server.create_user("eve", "eve-password-1")
    verifier, challenge = pkce_pair()
    result = other.authorize(client, state="s3", code_challenge=challenge, scope="openid", username="eve",
                             password="eve-password-1")
    eve_token = _exchange(server, client, result.code, verifier)
    eve_info = requests.get(
        f"{server.url}/oidc/userinfo", headers={"Authorization": f"Bearer {eve_token['access_token']}"}, timeout=10
    ).json()
    assert eve_info["sub"] != info.json()["sub"]

"""Each injected fault, as an HTTP client sees it."""

import time

import pytest
import requests

from tests.sandbox.conftest import Flow


@pytest.fixture
def connected(make_flow):
    flow = make_flow()
    return flow, flow.connect()


def test_latency_is_added(sandbox_server, connected):
    flow, tokens = connected
    sandbox_server.set_faults(flow.client["client_id"], latency_ms=400)
    started = time.monotonic()
    assert flow.account(tokens["access_token"]).status_code == 200
    assert time.monotonic() - started >= 0.4


def test_error_5xx_rate(sandbox_server, connected):
    flow, tokens = connected
    sandbox_server.set_faults(flow.client["client_id"], error_5xx_rate=1.0)
    response = flow.account(tokens["access_token"])
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"
    assert flow.refresh(tokens["refresh_token"]).status_code == 500
    sandbox_server.set_faults(flow.client["client_id"], error_5xx_rate=0)
    assert flow.account(tokens["access_token"]).status_code == 200


def test_rate_limit_answers_429_with_retry_after(sandbox_server, connected):
    flow, tokens = connected
    sandbox_server.set_faults(flow.client["client_id"], rate_limit=17)
    response = flow.account(tokens["access_token"])
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "17"
    assert flow.refresh(tokens["refresh_token"]).status_code == 429


def test_outage_answers_503_everywhere(sandbox_server, connected):
    flow, tokens = connected
    sandbox_server.set_faults(flow.client["client_id"], outage=True)
    assert flow.account(tokens["access_token"]).status_code == 503
    assert flow.refresh(tokens["refresh_token"]).status_code == 503
    assert flow.revoke(tokens["access_token"]).status_code == 503


def test_stopped_server_is_a_closed_port_then_comes_back(own_sandbox_server):
    flow = Flow(own_sandbox_server, own_sandbox_server.create_client())
    tokens = flow.connect()
    own_sandbox_server.stop()
    with pytest.raises(requests.ConnectionError):
        flow.account(tokens["access_token"])
    own_sandbox_server.start()
    assert flow.account(tokens["access_token"]).status_code == 200


def test_revoke_all_grants_kills_every_token(sandbox_server, make_flow):
    flow = make_flow()
    first, second = flow.connect(), flow.connect()
    assert sandbox_server.revoke_all(flow.client["client_id"]) == {"revoked_grants": 2}
    for tokens in (first, second):
        assert flow.account(tokens["access_token"]).status_code == 401
        assert flow.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_refresh_invalid_grant(sandbox_server, connected):
    flow, tokens = connected
    sandbox_server.set_faults(flow.client["client_id"], refresh_invalid_grant=True)
    response = flow.refresh(tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert flow.account(tokens["access_token"]).status_code == 200


def test_html_errors_instead_of_json(sandbox_server, connected):
    flow, tokens = connected
    sandbox_server.set_faults(flow.client["client_id"], html_errors=True)
    response = flow.account(tokens["access_token"])
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text
    with pytest.raises(ValueError):
        response.json()


def test_a_stall_longer_than_the_client_timeout_is_a_client_timeout(sandbox_server, connected):
    flow, tokens = connected
    sandbox_server.set_faults(flow.client["client_id"], stall_seconds=3)
    with pytest.raises(requests.Timeout):  # the client's 0.5 s, not the end of the 3 s stall
        flow.account(tokens["access_token"], timeout=0.5)
    # Other clients are not held up by the stalled request.
    other = sandbox_server.create_client(name="Other")
    assert requests.get(f"{sandbox_server.url}/.well-known/oauth-authorization-server", timeout=2).ok
    assert other["client_id"]


def test_faults_are_readable_and_validated(sandbox_server, connected):
    flow, _ = connected
    cid = flow.client["client_id"]
    assert sandbox_server.faults(cid)["outage"] is False
    bad = sandbox_server.control("PATCH", f"clients/{cid}/faults", {"error_5xx_rate": 2})
    assert bad.status_code == 400
    unknown = sandbox_server.control("PATCH", f"clients/{cid}/faults", {"explode": True})
    assert unknown.status_code == 400

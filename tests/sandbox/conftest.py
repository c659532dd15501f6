import pytest
import requests

from tests.fixtures.sandbox import pkce_pair


class Flow:
    """The client side of one OAuth dance against the sandbox, over real HTTP."""

    def __init__(self, server, client: dict):
        self.server = server
        self.client = client
        self.http = requests.Session()

    def auth(self, data: dict) -> tuple[dict, tuple | None]:
        data = dict(data)
        if self.client["token_endpoint_auth_method"] == "client_secret_post":
            data.update(client_id=self.client["client_id"], client_secret=self.client["client_secret"])
            return data, None
        return data, (self.client["client_id"], self.client["client_secret"])

    def token(self, **data) -> requests.Response:
        body, basic = self.auth(data)
        return self.http.post(f"{self.server.url}/oauth/token", data=body, auth=basic, timeout=10)

    def consent(self, **kwargs):
        verifier, challenge = pkce_pair()
        result = self.server.browser().authorize(self.client, code_challenge=challenge, **kwargs)
        return result, verifier

    def exchange(self, code: str, verifier: str, redirect_uri: str | None = None) -> requests.Response:
        return self.token(
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
            redirect_uri=redirect_uri or self.client["redirect_uris"][0],
        )

    def connect(self) -> dict:
        """Consent and exchange the code; returns the token response JSON."""
        result, verifier = self.consent()
        assert result.code, result
        response = self.exchange(result.code, verifier)
        assert response.status_code == 200, response.text
        return response.json()

    def refresh(self, refresh_token: str) -> requests.Response:
        return self.token(grant_type="refresh_token", refresh_token=refresh_token)

    def account(self, access_token: str, timeout: float = 10) -> requests.Response:
        return self.http.get(
            f"{self.server.url}/v1/account", headers={"Authorization": f"Bearer {access_token}"}, timeout=timeout
        )

    def revoke(self, token: str, hint: str | None = None) -> requests.Response:
        body, basic = self.auth({"token": token, **({"token_type_hint": hint} if hint else {})})
        return self.http.post(f"{self.server.url}/oauth/revoke", data=body, auth=basic, timeout=10)


@pytest.fixture
def sandbox_server(shared_sandbox):
    """The session's sandbox process: each test here makes its own clients (faults, counters and
    grants are per client), so they do not meet. A test that stops the process or reads its log
    takes `own_sandbox_server`."""
    return shared_sandbox


@pytest.fixture
def make_flow(sandbox_server, sandbox_client_factory):
    def make(**client_fields) -> Flow:
        return Flow(sandbox_server, sandbox_client_factory(**client_fields))

    return make

"""No secret in any log line of a whole connect -> refresh -> disconnect flow.

brokerlink runs in this process (Django test client), the sandbox broker in a subprocess over
real HTTP, both at DEBUG so urllib3/authlib/uvicorn debug lines are included. Both logs are
searched for the real access and refresh tokens (every generation), the client secret, the
authorization code and the state.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from django.conf import settings as django_settings

from brokers.models import BrokerApp
from connections.models import Connection, ConnectionStatus
from engine.services import connection_refresh_now
from tests.fixtures.sandbox import CONTROL_TOKEN, SandboxServer, _csrf
from tests.support import PYTHON, free_port, running, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CALLBACK = "http://testserver/connections/callback/sandbox/"


class DebugSandbox(SandboxServer):
    """The standalone sandbox with Django at LOG_LEVEL=DEBUG and uvicorn's access log on."""

    def start(self) -> None:
        from contextlib import ExitStack

        stack = ExitStack()
        cmd = [PYTHON, "manage.py", "sandbox_serve", "--port", str(self.port), "--log-level", "debug"]
        env = subprocess_env(SANDBOX_CONTROL_TOKEN=CONTROL_TOKEN, LOG_LEVEL="DEBUG")
        stack.enter_context(
            running(cmd, env=env, ready_url=f"{self.url}/.well-known/oauth-authorization-server", log_name="flowlogs")
        )
        self._stack = stack


@pytest.fixture
def debug_sandbox(transactional_db):
    server = DebugSandbox(free_port())
    started = time.time()
    server.start()
    try:
        server._ok(server.control("POST", "users", {"demo": True}))
        yield server
    finally:
        server.stop()
    server.log_files = [
        p for p in (Path(django_settings.VAR_DIR) / "test-logs").glob("flowlogs-*.log") if p.stat().st_mtime >= started
    ]


def consent(sandbox, authorize_url: str) -> str:
    """A person at the sandbox: sign in, pick the first account, approve. Returns the callback URL."""
    browser = sandbox.browser()
    response = browser.session.get(authorize_url, allow_redirects=False, timeout=10)
    if response.status_code == 302 and "/login/" in response.headers["Location"]:
        signed_in = browser.login(login_url=urljoin(authorize_url, response.headers["Location"]))
        assert signed_in.status_code == 302
        response = browser.session.get(
            urljoin(authorize_url, signed_in.headers["Location"]), allow_redirects=False, timeout=10
        )
    assert response.status_code == 200, response.text[:300]
    import re

    form = {"csrfmiddlewaretoken": _csrf(response.text), "decision": "approve"}
    accounts = re.findall(r'name="account" value="(\d+)"', response.text)
    if accounts:
        form["account"] = accounts[0]
    answer = browser.session.post(authorize_url, data=form, allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    return answer.headers["Location"]


def test_connect_refresh_disconnect_logs_carry_no_secret(debug_sandbox, captured_logs, client, user, settings):
    settings.SANDBOX_BASE_URL = debug_sandbox.url
    sandbox_client = debug_sandbox.create_client(redirect_uris=[CALLBACK], rotate_refresh=True)
    app = BrokerApp(
        broker_slug="sandbox", environment="paper", client_id=sandbox_client["client_id"], redirect_uri=CALLBACK
    )
    app.client_secret = sandbox_client["client_secret"]
    app.save()
    client.force_login(user)
    secrets: dict[str, str] = {"client secret": sandbox_client["client_secret"]}

    # connect
    start = client.post("/connections/connect/sandbox/")
    assert start.status_code == 302 and start["Location"].startswith(debug_sandbox.url)
    callback = consent(debug_sandbox, start["Location"])
    params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    secrets["authorization code"], secrets["state"] = params["code"], params["state"]
    done = client.get(callback.replace("http://testserver", ""))
    assert done.status_code in (200, 302), done.content[:500]
    conn = Connection.objects.get(user=user)
    assert conn.status == ConnectionStatus.CONNECTED
    secrets["access token 1"], secrets["refresh token 1"] = conn.access_token, conn.refresh_token

    # refresh (rotating refresh tokens: a new pair)
    conn = connection_refresh_now(conn)
    conn.refresh_from_db()
    secrets["access token 2"], secrets["refresh token 2"] = conn.access_token, conn.refresh_token
    assert secrets["access token 2"] != secrets["access token 1"]

    # disconnect (revokes both at the sandbox)
    client.post(f"/connections/{conn.pk}/disconnect/")
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.DISCONNECTED
    assert debug_sandbox.counters(sandbox_client["client_id"])["revocations"] >= 1
    debug_sandbox.stop()  # flush and close the child's log

    in_process = captured_logs.text
    child = "\n".join(p.read_text(errors="replace") for p in debug_sandbox_logs())
    # The logs are real and verbose: debug lines from both sides of the HTTP calls.
    assert "urllib3.connectionpool" in in_process and "DEBUG" in in_process
    assert "connections.connect.done" in in_process
    assert "/oauth/token" in child and "/oauth/revoke" in child, child[-2000:]
    for what, value in secrets.items():
        assert value and len(value) >= 8, what
        assert value not in in_process, f"{what} leaked into brokerlink's log"
        assert value not in child, f"{what} leaked into the sandbox's log"


def debug_sandbox_logs() -> list[Path]:
    folder = Path(django_settings.VAR_DIR) / "test-logs"
    files = sorted(folder.glob("flowlogs-*.log"), key=lambda p: p.stat().st_mtime)
    assert files, "the sandbox wrote no log"
    return files[-1:]


def test_percent_encoded_code_and_state_inside_another_parameter_are_redacted():
    from ops.logging import redact

    line = (
        "POST /login/?next=%2Foauth%2Fauthorize%3Fclient_id%3Dsbx_1%26state%3DSTATE-abc123xyz%26scope%3Dread"
        "&back=%252Fcb%253Fcode%253DCODE-987zyx%2526x%253D1"
    )
    cleaned = redact(line)
    assert "STATE-abc123xyz" not in cleaned and "CODE-987zyx" not in cleaned
    assert "client_id%3Dsbx_1" in cleaned and "scope%3Dread" in cleaned and "x%253D1" in cleaned

"""Every way a connect can fail: a specific message and next step, and nothing half-created."""

import time
from urllib.parse import urlencode, urlsplit

import pytest
from django.contrib.sessions.backends.db import SessionStore

from connections.models import Connection, ConnectionEvent
from connections.oauth_flow import SESSION_KEY, STATE_TTL_SECONDS


def callback_with(hop, **changes) -> str:
    params = {**hop.params, **changes}
    params = {k: v for k, v in params.items() if v is not None}
    return f"{hop.location.split('?')[0]}?{urlencode(params)}"


def assert_failed(page, *, status: int, title: str, code: str):
    assert page.status_code == status, page.text[:500]
    assert title in page.text
    assert f'data-failure="{code}"' in page.text
    assert "What happened" in page.text and "What it means" in page.text and "What to do next" in page.text
    assert "Try again" in page.text
    assert Connection.objects.count() == 0
    assert ConnectionEvent.objects.count() == 0


def test_access_denied(browser, sandbox_app):
    hop = browser.authorize("/connections/connect/sandbox/", decision="deny")
    assert hop.params["error"] == "access_denied"
    page = browser.follow(hop.location)
    assert_failed(page, status=400, title="You declined access", code="access_denied")
    assert "choose Allow" in page.text


def test_forged_state(browser, sandbox_app):
    page = browser.get("/connections/callback/sandbox/?" + urlencode({"state": "forged-by-attacker", "code": "x"}))
    assert_failed(page, status=400, title="This sign-in link is not one brokerlink started", code="state_unknown")


def test_state_from_another_session_is_forged(browser, sandbox_app, stack, other_user):
    from tests.connections.conftest import PASSWORD
    from tests.harness import Browser

    hop = browser.authorize("/connections/connect/sandbox/")
    attacker = Browser(stack)
    attacker.login(other_user.email, PASSWORD)
    page = attacker.follow(hop.location)
    assert_failed(page, status=400, title="This sign-in link is not one brokerlink started", code="state_unknown")


def test_missing_state(browser, sandbox_app):
    page = browser.get("/connections/callback/sandbox/?code=abc")
    assert_failed(page, status=400, title="The broker sent no state", code="state_missing")


def test_replayed_state(browser, sandbox_app):
    hop = browser.authorize("/connections/connect/sandbox/")
    assert browser.follow(hop.location).status_code == 200
    assert Connection.objects.count() == 1
    Connection.objects.all().delete()

    page = browser.follow(hop.location)
    assert_failed(page, status=400, title="This sign-in was already used", code="state_replayed")


def test_expired_state(browser, sandbox_app):
    hop = browser.authorize("/connections/connect/sandbox/")
    session = SessionStore(session_key=browser.session.cookies["sessionid"])
    flows = session[SESSION_KEY]
    flows[hop.params["state"]]["created_at"] = time.time() - STATE_TTL_SECONDS - 5
    session[SESSION_KEY] = flows
    session.save()

    page = browser.follow(hop.location)
    assert_failed(page, status=400, title="This sign-in took too long", code="state_expired")


def test_code_rejected_by_broker(browser, sandbox_app):
    hop = browser.authorize("/connections/connect/sandbox/")
    page = browser.follow(callback_with(hop, code="not-a-code-the-broker-issued"))
    assert_failed(page, status=400, title="The broker rejected the authorization code", code="code_rejected")


def test_missing_code(browser, sandbox_app):
    hop = browser.authorize("/connections/connect/sandbox/")
    page = browser.follow(callback_with(hop, code=None))
    assert_failed(page, status=400, title="The broker sent no authorization code", code="code_missing")


def test_issuer_mismatch_mix_up_defence(browser, sandbox_app):
    hop = browser.authorize("/connections/connect/sandbox/")
    page = browser.follow(callback_with(hop, iss="https://evil.example/"))
    assert_failed(page, status=400, title="The answer came from the wrong authorization server", code="issuer_mismatch")


def test_broker_down(browser, sandbox_app, stack):
    _, client = sandbox_app
    hop = browser.authorize("/connections/connect/sandbox/")
    stack.sandbox.set_faults(client["client_id"], outage=True)
    page = browser.follow(hop.location)
    assert_failed(page, status=502, title="The broker is having problems", code="broker_down")
    assert "HTTP 503" in page.text


def test_broker_slow_times_out(browser, sandbox_app, stack):
    _, client = sandbox_app
    hop = browser.authorize("/connections/connect/sandbox/")
    stack.sandbox.set_faults(client["client_id"], stall_seconds=4)  # the server's read timeout is 2 s
    page = browser.follow(hop.location)
    assert_failed(page, status=502, title="The broker did not answer in time", code="broker_unreachable")
    assert "did not answer within 2 seconds" in page.text


@pytest.mark.parametrize("html_status", [502, 200])
def test_html_instead_of_json(browser, sandbox_app, stack, html_status):
    """A gateway error page, or a login page served with 200: either way not a token."""
    _, client = sandbox_app
    hop = browser.authorize("/connections/connect/sandbox/")
    stack.sandbox.set_faults(client["client_id"], html_errors=True, html_status=html_status)
    page = browser.follow(hop.location)
    title = "The broker sent something brokerlink could not read"
    assert_failed(page, status=502, title=title, code="unexpected_response")
    assert "HTML" in page.text


def test_missing_refresh_token_where_one_is_expected(browser, stack):
    _, client = stack.broker_app("sandbox", issues_refresh_token=False)
    page = browser.connect()
    assert_failed(page, status=400, title="The broker did not issue a refresh token", code="missing_refresh_token")
    # The access token brokerlink will not keep was handed back.
    assert stack.sandbox.counters(client["client_id"])["revocations"] == 1


@pytest.mark.parametrize("path", ["/connections/callback/sandbox/?state=x&code=y"])
def test_callback_requires_login(stack, path):
    from tests.harness import Browser

    response = Browser(stack).get(path, allow_redirects=False)
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/accounts/login/"


def test_one_state_spends_the_code_once_under_concurrent_callbacks(browser, sandbox_app, stack):
    """Security finding 5: four simultaneous callbacks with one state make one token request."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    _, client = sandbox_app
    hop = browser.authorize("/connections/connect/sandbox/")
    before = stack.sandbox.counters(client["client_id"])["token_requests"]

    def callback(_):
        session = requests.Session()
        session.cookies.update(browser.session.cookies)
        return session.get(hop.location, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(callback, range(4)))
    assert stack.sandbox.counters(client["client_id"])["token_requests"] - before == 1
    assert statuses.count(200) == 1 and Connection.objects.count() == 1

"""A standards-following OpenID Connect broker declared in YAML alone stays connected.

The broker is the standalone sandbox in OIDC mode (discovery at
/.well-known/openid-configuration, userinfo answering only {"sub": ...}, offline_access only
with prompt=consent, no `iss` on callbacks, rotating refresh tokens, PKCE required). It is
declared with nothing but `discovery_url`, `heartbeat_path` and `scopes`. An admin adds its
credentials in Django admin, a person connects in Chromium, and the heartbeat sweep (the
Celery task's code, run in this long-lived process the way a worker runs it) keeps it alive
through several refreshes of 6-second access tokens, a stall, a discovery outage and a broker
restart.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import unquote

import pytest
import requests
from django.db.models import F
from django.utils import timezone
from playwright.sync_api import expect

from brokers import custom
from brokers.models import BrokerApp, DiscoveredMetadata
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from engine.models import EngineState
from tests.engine.history import stored_checks
from tests.fixtures.browser import chromium  # noqa: F401 - the Chromium fixture
from tests.fixtures.sandbox import DEMO_PASSWORD, DEMO_USERNAME, SandboxServer
from tests.harness import BrokerlinkServer
from tests.support import free_port, totp_code, wait_for, with_second_factor

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery"
ACCESS_TTL = 6
YAML = """
brokers:
  northwind:
    discovery_url: {root}/.well-known/openid-configuration
    heartbeat_path: /oidc/userinfo
    scopes: [openid, offline_access]
"""


# Sweeps run on their own thread, as in a worker: Playwright's sync API keeps an event loop
# in the test's thread, and the sweep runs its own.
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweep")


def _sweep_now(connection_id) -> dict:
    from engine.models import CircuitBreaker
    from tests.engine.cycle import cycle_summary, run_one_cycle_in_process

    now = timezone.now()
    EngineState.objects.filter(pk=connection_id).update(next_check_at=now, lease_until=None, lease_owner="")
    CircuitBreaker.objects.filter(state="open").update(next_probe_at=now)
    return cycle_summary(run_one_cycle_in_process())


def sweep(connection_id) -> dict:
    """One heartbeat sweep, as the worker runs it, with this connection made due."""
    return _worker.submit(_sweep_now, connection_id).result(timeout=60)


def sign_in(page, url: str, email: str, totp_secret: str = "") -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form").filter(has=page.locator("input[name=password]")).locator("button[type=submit]").click()
    if totp_secret:  # staff: the second factor allauth asks for
        page.wait_for_url("**/accounts/2fa/authenticate/**")
        page.fill("input[name=code]", totp_code(totp_secret))
        page.locator("form").filter(has=page.locator("input[name=code]")).locator("button[type=submit]").click()
    page.wait_for_url(f"{url}/connections/")


def sandbox_consent(page, username: str, password: str) -> None:
    """At the broker: sign in if asked, then allow."""
    page.wait_for_load_state()
    if page.locator("input[name=username]").count():
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.locator("form button[type=submit]").first.click()
    page.get_by_role("button", name="Allow").click()


def userinfo(root: str, access_token: str) -> int:
    return requests.get(
        f"{root}/oidc/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    ).status_code


@pytest.fixture
def oidc_world(transactional_db, tmp_path, settings):
    broker = SandboxServer(free_port())
    broker.start()
    brokers_file = tmp_path / "brokers.yaml"
    brokers_file.write_text(YAML.format(root=broker.url))
    settings.BROKERS_FILE = str(brokers_file)
    settings.ENGINE_HTTP_TIMEOUT = 1.0  # a stalled heartbeat fails after 1 s, not 10
    app_server = BrokerlinkServer.start(BROKERS_FILE=str(brokers_file), BROKER_READ_TIMEOUT_SECONDS="3")
    try:
        broker._ok(broker.control("POST", "users", {"demo": True}))
        broker.create_user("eve", "eve-broker-pass", [{"kind": "Individual", "account_number": "PA77770001"}])
        yield broker, app_server, brokers_file
    finally:
        from django.db import connections

        _worker.submit(lambda: connections.close_all()).result()  # the sweep thread's database session
        app_server.stop()
        broker.stop()


def test_oidc_broker_declared_in_yaml_connects_and_stays_connected(
    oidc_world, user, django_user_model, chromium, monkeypatch  # noqa: F811 - the fixture imported above
):
    broker, app_server, _brokers_file = oidc_world
    url = app_server.url
    client = broker.create_client(
        name="brokerlink northwind",
        redirect_uris=[f"{url}/connections/callback/northwind/"],
        oidc=True,
        access_ttl=ACCESS_TTL,
        rotate_refresh=True,
        login_session_ttl=600,
    )
    cid = client["client_id"]

    # --- an admin adds the broker app in Django admin ---
    root = with_second_factor(django_user_model.objects.create_superuser(email="root@example.com", password=PASSWORD))
    admin_context = chromium.new_context()
    admin = admin_context.new_page()
    admin.set_default_timeout(15_000)
    sign_in(admin, url, "root@example.com", root.totp_secret)
    admin.goto(f"{url}/admin/brokers/brokerapp/add/")
    admin.select_option("select[name=broker_slug]", "northwind")
    admin.select_option("select[name=environment]", "live")
    admin.fill("input[name=client_id]", cid)
    admin.fill("input[name=new_client_secret]", client["client_secret"])
    admin.locator("input[name=_save]").click()
    expect(admin.locator(".messagelist")).to_contain_text("was added successfully")
    admin_context.close()
    assert BrokerApp.objects.get(broker_slug="northwind").client_id == cid

    # --- a person connects through the broker's login and consent pages ---
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, url, user.email)
    page.goto(f"{url}/connections/connect/")
    page.get_by_role("button", name="Connect northwind").click()
    asked = unquote(page.url)  # the sandbox's login page, carrying the authorize request
    assert "prompt=consent" in asked and "code_challenge_method=S256" in asked
    sandbox_consent(page, DEMO_USERNAME, DEMO_PASSWORD)
    page.wait_for_url(f"{url}/connections/*/")
    expect(page.locator("#messages")).to_contain_text("Connected")
    connection = Connection.objects.get(user=user, broker_slug="northwind")
    assert connection.status == ConnectionStatus.CONNECTED
    assert connection.account_id.startswith("sbx-user-")  # the OIDC subject
    assert "offline_access" in connection.scope.split()

    # --- heartbeats, then several refreshes of the 6-second access token ---
    sweep(connection.pk)
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.CONNECTED
    assert broker.counters(cid)["refreshes"] == 0, "a fresh token is not refreshed (margin: a third of 6 s)"
    seen_access = {connection.access_token}
    for _ in range(3):
        connection.refresh_from_db()
        # Just inside the refresh margin (2 s before expiry): brokerlink's stored token times move
        # back instead of the test waiting for them (the broker's token stays valid meanwhile).
        early = timedelta(seconds=max(0.0, (connection.access_expires_at - timezone.now()).total_seconds() - 1.6))
        Connection.objects.filter(pk=connection.pk).update(
            access_expires_at=F("access_expires_at") - early,
            last_refreshed_at=F("last_refreshed_at") - early,
            grant_started_at=F("grant_started_at") - early,
        )
        sweep(connection.pk)
        connection.refresh_from_db()
        assert connection.status == ConnectionStatus.CONNECTED, connection.last_error_message
        seen_access.add(connection.access_token)
    counters = broker.counters(cid)
    assert counters["refreshes"] == 3
    assert counters["rotated_reuses"] == 0
    assert len(seen_access) == 4
    assert sum(c.ok for c in stored_checks(connection)) >= 4

    # --- the broker stalls (answers after the 1 s heartbeat timeout), then resumes ---
    broker.set_faults(cid, stall_seconds=1.5)
    sweep(connection.pk)
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.DEGRADED
    assert connection.last_error_category == "network"
    broker.set_faults(cid, stall_seconds=0)
    sweep(connection.pk)
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.CONNECTED, connection.last_error_message

    # --- discovery outage: the broker restarts; nothing in brokerlink restarts ---
    broker.stop()
    custom._file_cache.clear()
    monkeypatch.setattr(custom, "DISCOVERY_RETRY_SECONDS", 0)
    DiscoveredMetadata.objects.all().delete()  # worst case: no stored copy either
    sweep(connection.pk)
    connection.refresh_from_db()
    assert connection.status != ConnectionStatus.CONNECTED
    broker.start()  # answering its metadata URL when this returns

    def recovered() -> bool:
        sweep(connection.pk)
        connection.refresh_from_db()
        return connection.status == ConnectionStatus.CONNECTED

    wait_for(recovered, timeout=30, interval=1, what="the connection recovers once discovery answers again")
    assert DiscoveredMetadata.objects.filter(url__endswith="/.well-known/openid-configuration").exists()
    monkeypatch.setattr(custom, "DISCOVERY_RETRY_SECONDS", 60)

    # --- the grant dies at the broker; reconnect as the same broker user ---
    broker.revoke_all(cid)
    sweep(connection.pk)
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.NEEDS_REAUTH
    page.goto(f"{url}/connections/")
    page.locator(f"#card-{connection.pk}").get_by_role("button", name="Reconnect").click()
    sandbox_consent(page, DEMO_USERNAME, DEMO_PASSWORD)
    page.wait_for_url(f"{url}/connections/{connection.pk}/")
    expect(page.locator("#messages")).to_contain_text("Reconnected")
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.CONNECTED

    # --- and as another broker user: refused, tokens handed back, history says so ---
    broker.revoke_all(cid)
    sweep(connection.pk)
    page.goto(f"{url}/connections/")
    context.clear_cookies(name="sandbox_login")
    page.locator(f"#card-{connection.pk}").get_by_role("button", name="Reconnect").click()
    sandbox_consent(page, "eve", "eve-broker-pass")
    expect(page.locator("h1")).to_contain_text("That is a different brokerage account")
    grants = broker.counters(cid)["grants"]
    assert grants[-1]["revoked"] is True, "the other account's tokens were handed back"
    assert connection.events.filter(kind=ConnectionEvent.Kind.RECONNECT_REFUSED).exists()
    page.goto(f"{url}/connections/{connection.pk}/")
    expect(page.locator("#connection-events")).to_contain_text("Reconnect refused")

    # --- reconnect properly, then disconnect: tokens inactive at the broker afterwards ---
    context.clear_cookies(name="sandbox_login")
    page.goto(f"{url}/connections/")
    page.locator(f"#card-{connection.pk}").get_by_role("button", name="Reconnect").click()
    sandbox_consent(page, DEMO_USERNAME, DEMO_PASSWORD)
    page.wait_for_url(f"{url}/connections/{connection.pk}/")
    connection.refresh_from_db()
    access, refresh = connection.access_token, connection.refresh_token
    assert userinfo(broker.url, access) == 200
    page.goto(f"{url}/connections/")
    page.locator(f"#disconnect-{connection.pk}").click()
    page.locator("dialog#disconnect-dialog #disconnect-confirm").click()
    expect(page.locator("dialog#disconnect-dialog")).to_contain_text("Revoked at northwind.")
    assert userinfo(broker.url, access) == 401
    answer = requests.post(
        f"{broker.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh},
        auth=(cid, client["client_secret"]),
        timeout=10,
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    context.close()

"""The live pages in Chromium: connect the Sandbox Broker through its consent page, watch the
card follow an outage and a recovery without a reload, Check now, disconnect in a dialog.

brokerlink runs under uvicorn (ASGI, so the event stream is real) with the sandbox mounted;
the heartbeat sweep runs in a subprocess exactly as a Celery worker would run it.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from playwright.sync_api import expect

from connections.models import Connection, ConnectionStatus
from tests.fixtures.sandbox import CONTROL_TOKEN, DEMO_PASSWORD, DEMO_USERNAME
from tests.harness import BrokerlinkServer
from tests.support import PYTHON, ROOT, subprocess_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The dashboard's event stream, whatever its query (?seen=: what the page shows).
DASHBOARD_STREAM = re.compile(r"/connections/stream/(\?.*)?$")

PASSWORD = "correct horse battery"
SCREENSHOTS = ROOT / "docs" / "screenshots"

# One heartbeat cycle as production runs it (beat's tick and its lanes, inline). The test
# first makes the connection due (a cycle only checks what is due) and, after an outage, lets
# the open circuit's cool-down pass, so the test does not wait the real 60 s.
SWEEP = """
import django; django.setup()
from django.utils import timezone
from connections.models import Connection
from engine.models import CircuitBreaker, EngineState
from tests.engine.cycle import cycle_summary, run_one_cycle_in_process
now = timezone.now()
EngineState.objects.filter(pk="{pk}").update(next_check_at=now, lease_until=None, lease_owner="")
CircuitBreaker.objects.filter(state="open").update(next_probe_at=now)
print(cycle_summary(run_one_cycle_in_process()))
"""


def sweep(server: BrokerlinkServer, connection_id) -> None:
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.connections.server_settings",
        SITE_URL=server.url,
        SANDBOX_BASE_URL=server.sandbox.url,
        SANDBOX_CONTROL_TOKEN=CONTROL_TOKEN,
        BROKER_READ_TIMEOUT_SECONDS="2",
    )
    done = subprocess.run(
        [PYTHON, "-c", SWEEP.format(pk=connection_id)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]


def sign_in(page, server: BrokerlinkServer, email: str) -> None:
    page.goto(f"{server.url}/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form").filter(has=page.locator("input[name=password]")).locator("button[type=submit]").click()
    page.wait_for_url(f"{server.url}/connections/")


def connect_sandbox(page, server: BrokerlinkServer) -> None:
    page.goto(f"{server.url}/connections/connect/")
    page.get_by_role("button", name="Connect Sandbox Broker").click()
    page.wait_for_url("**/sandbox/login/**")
    page.fill("input[name=username]", DEMO_USERNAME)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.locator("form button[type=submit]").first.click()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{server.url}/connections/*/")


def card_badge(page, connection):
    return page.locator(f"#card-{connection.pk} .badge")


def test_live_dashboard_follows_outage_recovery_check_and_disconnect(stack, user, page):
    _app, client = stack.broker_app("sandbox", rotate_refresh=True)
    sign_in(page, stack, user.email)
    connect_sandbox(page, stack)
    connection = Connection.objects.get(user=user)

    # Healthy after its first check.
    sweep(stack, connection.pk)
    page.goto(f"{stack.url}/connections/")
    expect(card_badge(page, connection)).to_have_text("Connected")
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    expect(page.locator(f"#card-{connection.pk} [data-field=last-success]")).to_contain_text("Last successful check")
    page.evaluate("window.__noReload = true")

    # Outage at the broker: the card turns "Retrying", then (circuit open) "Waiting for the broker", live.
    stack.sandbox.set_faults(client["client_id"], outage=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        sweep(stack, connection.pk)
        connection.refresh_from_db()
        if connection.status == ConnectionStatus.BROKER_OUTAGE:
            break
        expect(card_badge(page, connection)).to_have_text("Retrying", timeout=2000)
    assert connection.status == ConnectionStatus.BROKER_OUTAGE
    expect(card_badge(page, connection)).to_have_text("Waiting for the broker", timeout=2000)
    expect(page.locator("[data-count=waiting]")).to_have_text("1", timeout=2000)
    expect(page.locator("#live-announcer")).to_contain_text("Waiting for the broker")
    assert page.evaluate("window.__noReload") is True

    # The broker recovers: the next check (the circuit's probe) brings the card back.
    stack.sandbox.set_faults(client["client_id"], outage=False)
    sweep(stack, connection.pk)
    expect(card_badge(page, connection)).to_have_text("Connected", timeout=6000)
    assert page.evaluate("window.__noReload") is True
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    # Check now: "checking…" while it runs, then the result in place.
    button = page.locator(f"#check-card-{connection.pk}")
    stack.sandbox.set_faults(client["client_id"], latency_ms=1200)
    button.click()
    expect(button).to_contain_text("checking…")
    expect(card_badge(page, connection)).to_have_text("Slow", timeout=10_000)  # 1,200 ms vs a usual 50 ms
    expect(page.locator("#messages")).to_contain_text("Check passed, slowly.")
    stack.sandbox.set_faults(client["client_id"], latency_ms=0)
    assert page.evaluate("window.__noReload") is True

    # The detail page: charts, timeline, token status.
    page.goto(f"{stack.url}/connections/{connection.pk}/")
    expect(page.locator("#connection-events")).to_contain_text("Waiting for the broker")
    expect(page.locator(".chart--latency")).to_be_visible()
    expect(page.locator("[data-field=access-expiry]")).to_contain_text("expires in")
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    page.screenshot(path=str(SCREENSHOTS / "detail.png"), full_page=True)

    # Disconnect in a dialog; the revocation is confirmed in place.
    page.goto(f"{stack.url}/connections/")
    page.locator(f"#disconnect-{connection.pk}").click()
    dialog = page.locator("dialog#disconnect-dialog")
    expect(dialog).to_be_visible()
    assert page.evaluate("document.querySelector('dialog#disconnect-dialog').matches(':modal')")
    dialog.locator("#disconnect-confirm").click()
    expect(dialog).to_contain_text("Revoked at Sandbox Broker.")
    expect(card_badge(page, connection)).to_have_text("Disconnected", timeout=3000)
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.DISCONNECTED
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_have_count(0)


def test_phone_width_keyboard_and_no_javascript(stack, user, phone_page, chromium):
    _app, _client = stack.broker_app("sandbox", rotate_refresh=True)
    page = phone_page
    sign_in(page, stack, user.email)
    connect_sandbox(page, stack)
    connection = Connection.objects.get(user=user)
    page.goto(f"{stack.url}/connections/")
    card = page.locator(f"#card-{connection.pk}")
    expect(card).to_be_visible()
    # nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    # keyboard: Tab reaches Check now and Enter runs it
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == f"check-card-{connection.pk}":
            break
    assert page.evaluate("document.activeElement.id") == f"check-card-{connection.pk}"
    page.keyboard.press("Enter")
    expect(page.locator("#messages")).to_contain_text("Check", timeout=10_000)

    # JavaScript off: Check now and Disconnect are plain forms and full pages.
    context = chromium.new_context(java_script_enabled=False)
    try:
        nojs = context.new_page()
        sign_in(nojs, stack, user.email)
        nojs.locator(f"#check-card-{connection.pk}").click()
        nojs.wait_for_url(f"{stack.url}/connections/{connection.pk}/")
        expect(nojs.locator("#messages")).to_contain_text("Check")
        nojs.locator(f"#disconnect-{connection.pk}").click()
        nojs.wait_for_url(f"{stack.url}/connections/{connection.pk}/disconnect/")
        nojs.locator("#disconnect-confirm").click()
        nojs.wait_for_url(f"{stack.url}/connections/{connection.pk}/")
        expect(nojs.locator("#messages")).to_contain_text("Revoked at Sandbox Broker")
        expect(nojs.locator("#disconnect-result")).to_contain_text("Revoked at Sandbox Broker.")
    finally:
        context.close()


def test_stream_down_falls_back_to_polling_and_reconnects(stack, user, page):
    from django.utils import timezone

    from connections.state import connection_transition

    checked = timezone.now()  # a check passed: "Connected" is true
    connection = Connection.objects.create(
        user=user,
        broker_slug="sandbox",
        account_id="A-1",
        account_number_masked="••0001",
        status="connected",
        last_check_at=checked,
        last_success_at=checked,
    )
    page.route(DASHBOARD_STREAM, lambda route: route.abort())
    sign_in(page, stack, user.email)
    indicator = page.locator("#live-indicator")
    expect(indicator).to_contain_text("Reconnecting…")
    expect(indicator.get_by_role("button", name="Reconnect now")).to_be_visible()

    # No stream: the card polls every 5 s and still follows the change.
    connection_transition(connection=connection, to_status=ConnectionStatus.BROKER_OUTAGE, message="test")
    expect(card_badge(page, connection)).to_have_text("Waiting for the broker", timeout=8000)

    # The stream is back: "Reconnect now" reopens it at once.
    page.unroute(DASHBOARD_STREAM)
    indicator.get_by_role("button", name="Reconnect now").click()
    expect(page.locator("#live-indicator")).to_contain_text("Live", timeout=5000)
    # At any moment: the new stream opened with what the page shows (?seen=) and sends what
    # changed since, so a change as it opens is not lost.
    connection_transition(connection=connection, to_status=ConnectionStatus.CONNECTED, message="test")
    expect(card_badge(page, connection)).to_have_text("Connected", timeout=2000)

"""What a person expects around their connections, in Chromium: notification settings (each
toggle decides what is sent by email and to a channel on 127.0.0.1), time zones, nicknames, the
catalog as a user and as staff, disconnect with "Try revoking again", archive, CSV, dark mode,
a 390 px phone, the keyboard only and JavaScript off. Every page passes axe-core (vendored
under static/) with no serious or critical violation; colour contrast is one of its rules.
"""

from __future__ import annotations

import csv
import email
import io
import re
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from brokers.models import BrokerRequest
from connections.models import Connection, ConnectionStatus
from connections.state import connection_transition
from engine.checkstore import CheckRecord, checks_store, rings_for
from engine.notifications import notifications_dispatch
from engine.ring import Check
from pages.exports import HISTORY_HEADER, UPTIME_HEADER
from preferences.models import NotificationSettings
from preferences.notify import notification_test_cooldown_reset
from preferences.tasks import notification_test_send
from tests.fixtures.sandbox import DEMO_PASSWORD, DEMO_USERNAME
from tests.harness import BrokerlinkServer, Browser
from tests.pages.test_browser import PASSWORD, SCREENSHOTS, connect_sandbox, sign_in
from tests.support import pass_second_factor, wait_for, with_second_factor

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AXE = "/static/vendor/axe/axe-4.14.1.min.js"
AXE_RUN = """() => axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations
  .filter(v => v.impact === "serious" || v.impact === "critical")
  .map(v => v.id + ": " + v.help + " @ " + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(" | ")))"""


@pytest.fixture(scope="module")
def brokerlink(django_db_setup, django_db_blocker, tmp_path_factory):
    """This module's server: emails to a folder the tests read, and Coinbase served by the
    sandbox (a broker that revokes per token and has a page to revoke by hand)."""
    mail_dir = tmp_path_factory.mktemp("server-mail")
    server = BrokerlinkServer.start(
        BROKER_READ_TIMEOUT_SECONDS="2", EMAIL_FILE_PATH=str(mail_dir), SANDBOX_EMULATE_BROKERS="coinbase"
    )
    server.mail_dir = mail_dir
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def empty_server_mailbox(brokerlink):
    for path in brokerlink.mail_dir.glob("*"):
        path.unlink()


def server_mail(server) -> list[email.message.Message]:
    messages = []
    for path in sorted(server.mail_dir.glob("*.log")):
        for chunk in path.read_text().split("-" * 79):
            if chunk.strip():
                messages.append(email.message_from_string(chunk.strip()))
    return messages


def accessible(page, server, what: str) -> None:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=server.url + AXE)
    violations = page.evaluate(AXE_RUN)
    assert violations == [], f"{what}: {violations}"


def no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def tab_to(page, element_id: str, limit: int = 60) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"Tab never reached #{element_id}")


def a_connection(user, **fields) -> Connection:
    values = {
        "user": user,
        "broker_slug": "sandbox",
        "account_id": f"A-{time.monotonic_ns()}",
        "account_number_masked": "••0001",
        "status": ConnectionStatus.CONNECTED,
    }
    values.update(fields)
    return Connection.objects.create(**values)


def test_signed_out_pages_are_styled_readable_and_accessible(stack, page):
    for path, what in [
        ("/accounts/login/", "sign in"),
        ("/accounts/signup/", "sign up"),
        ("/accounts/password/reset/", "password reset"),
    ]:
        page.goto(stack.url + path)
        card = page.locator(".auth-card")
        expect(card).to_be_visible()
        # Inside the card, not the 1,068 px-wide browser-default form of before.
        assert card.locator("input:visible").first.bounding_box()["width"] <= 440
        accessible(page, stack, what)
    page.goto(stack.url + "/accounts/login/")
    create = page.get_by_role("link", name="Create account")
    assert create.evaluate("e => getComputedStyle(e).color") == "rgb(255, 255, 255)"
    page.screenshot(path=str(SCREENSHOTS / "sign-in.png"))


def test_settings_by_keyboard_decide_what_is_sent(stack, user, page, receiver):
    sign_in(page, stack, user.email)
    page.goto(f"{stack.url}/settings/")
    accessible(page, stack, "settings")

    page.fill("#id_name", "Webhook")
    page.fill("#id_url", receiver.url())
    page.get_by_role("button", name="Add channel").click()
    expect(page.locator("#messages")).to_contain_text("Channel “Webhook” added.")
    expect(page.locator("[data-channel=Webhook]")).to_contain_text("json://127.0.0.1")
    assert "/hook" not in page.content()  # the URL (its credentials) is never shown back

    # Keyboard only: Tab to "Broker outage", Space turns it off, Tab to Save, Enter.
    page.locator("body").focus()
    tab_to(page, "id_broker_outage")
    page.keyboard.press("Space")
    tab_to(page, "save-notifications")
    page.keyboard.press("Enter")
    expect(page.locator("#messages")).to_contain_text("Notification settings saved.")
    expect(page.locator("#id_broker_outage")).not_to_be_checked()
    assert NotificationSettings.objects.get(user=user).broker_outage is False

    # The engine honours it: no outage notice anywhere, a "needs you" by email and webhook.
    outage = a_connection(user)
    connection_transition(connection=outage, to_status=ConnectionStatus.BROKER_OUTAGE, message="HTTP 503")
    notifications_dispatch()
    assert mail.outbox == [] and receiver.messages == []
    broken = a_connection(user, nickname="Retirement")
    connection_transition(connection=broken, to_status=ConnectionStatus.NEEDS_REAUTH, message="invalid_grant")
    notifications_dispatch()
    assert [m.subject for m in mail.outbox] == ["Reconnect your Sandbox Broker account on brokerlink"]
    assert receiver.titles() == ["Reconnect your Sandbox Broker account on brokerlink"]
    assert "Retirement" in receiver.messages[0]["message"]

    # Email off: the next one reaches the webhook only.
    page.locator("#id_email").uncheck()
    page.locator("#save-notifications").click()
    expect(page.locator("#messages")).to_contain_text("Notification settings saved.")
    mail.outbox.clear()
    other = a_connection(user)
    connection_transition(connection=other, to_status=ConnectionStatus.FAILED, message="gave up")
    notifications_dispatch()
    assert mail.outbox == []
    assert receiver.titles()[-1] == "Your Sandbox Broker connection on brokerlink has stopped"

    # "Send me a test": the page answers at once (a worker sends it; here the worker's job runs
    # in the test process), then each channel's outcome shows in the list: webhook yes, email
    # no (off); then email back on.
    page.get_by_role("button", name="Send me a test").click()
    expect(page.locator("#messages")).to_contain_text("Test on its way: check your channels.")
    mail.outbox.clear()
    notification_test_send(user.pk)
    assert receiver.wait_for(3)[-1]["title"] == "brokerlink test notification"
    assert mail.outbox == []
    page.reload()
    expect(page.locator("[data-channel='Webhook'] [data-field='test-result']")).to_have_text("Last test: sent")
    page.locator("#id_email").check()
    page.locator("#save-notifications").click()
    notification_test_cooldown_reset(user=user)
    page.get_by_role("button", name="Send me a test").click()
    expect(page.locator("#messages")).to_contain_text("Test on its way: check your channels.")
    notification_test_send(user.pk)
    (sent,) = mail.outbox
    assert sent.subject == "brokerlink test notification" and sent.to == [user.email]
    page.reload()
    expect(page.locator("[data-field='test-email']")).to_have_text("Last test by email: sent")
    accessible(page, stack, "settings after changes")
    page.screenshot(path=str(SCREENSHOTS / "settings.png"), full_page=True)


def test_time_zone_detected_labelled_on_hover_and_focus_and_in_admin(stack, user, chromium, django_user_model):
    conn = a_connection(user)
    connection_transition(connection=conn, to_status=ConnectionStatus.DEGRADED, message="HTTP 503")
    context = chromium.new_context(viewport={"width": 1200, "height": 900}, timezone_id="America/New_York")
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        sign_in(page, stack, user.email)
        wait_for(lambda: django_user_model.objects.get(pk=user.pk).time_zone, timeout=10, what="time zone saved")
        assert django_user_model.objects.get(pk=user.pk).time_zone == "America/New_York"

        def reloaded_in_the_new_zone() -> bool:
            """static/js/time.js reloads the page once the zone is saved: navigating before that
            reload has finished would be interrupted by it."""
            try:
                return page.evaluate(
                    "document.readyState === 'complete'"
                    " && performance.getEntriesByType('navigation')[0].type === 'reload'"
                )
            except PlaywrightError:
                return False  # the reload is under way (the old page's context is gone)

        wait_for(reloaded_in_the_new_zone, timeout=15, what="the page reloaded after the zone was saved")
        page.goto(f"{stack.url}/connections/{conn.pk}/")
        moment = page.locator("#connection-events time.when--relative").first
        # "now" when the sign-in took under a second since the event, "… ago" otherwise
        expect(moment.locator(".when__rel")).to_have_text(re.compile(r"\bago$|^now$"))
        absolute = moment.locator(".when__abs")
        local = timezone.localtime(conn.status_changed_at, timezone=ZoneInfo("America/New_York"))
        expect(absolute).to_contain_text(f"{local:%Y-%m-%d %H:%M} E")  # EST or EDT, labelled
        assert absolute.bounding_box()["width"] <= 1  # hidden until hover or focus
        moment.hover()
        assert absolute.bounding_box()["width"] > 50
        page.mouse.move(0, 0)
        page.locator("body").focus()
        moment.focus()
        assert moment.evaluate("e => document.activeElement === e")  # focusable (tabindex=0)
        assert absolute.bounding_box()["width"] > 50
        accessible(page, stack, "detail with times")

        page.goto(f"{stack.url}/settings/")
        page.select_option("#id_time_zone", "Asia/Tokyo")
        page.get_by_role("button", name="Save time zone").click()
        expect(page.locator("#messages")).to_contain_text("Time zone set to Asia/Tokyo.")
        expect(page.locator("[data-field=time-zone]")).to_have_text("Asia/Tokyo")
        page.goto(f"{stack.url}/connections/{conn.pk}/")
        expect(page.locator("#connection-events .when__abs").first).to_contain_text("JST")

        # Admin: the same labelled format, a read-only page without Save, one Accounts section.
        django_user_model.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
        with_second_factor(user)  # admin needs one (docs/security.md), used in this session
        pass_second_factor(page, stack.url, user, "/admin/")
        page.goto(f"{stack.url}/admin/connections/connection/{conn.pk}/change/")
        expect(page.locator(".field-status_changed_at .readonly")).to_contain_text("JST")
        expect(page.locator("input[name=_save]")).to_have_count(0)
        page.goto(f"{stack.url}/admin/")
        expect(page.locator("#nav-sidebar caption, #content-main caption").filter(has_text="Accounts")).to_have_count(1)
        page.goto(f"{stack.url}/admin/brokers/brokerapp/add/")
        expect(page.locator(".field-redirect_uri .help")).to_contain_text("/connections/callback/<broker>/")
        expect(page.locator("label", has_text="Client secret")).to_have_count(1)
    finally:
        context.close()


def test_nickname_catalog_disconnect_revoke_again_archive_csv_dark(stack, user, other_user, page, django_user_model):
    stack.broker_app("sandbox", rotate_refresh=True)
    _app, coinbase = stack.broker_app("coinbase", environment="live", emulate="coinbase")
    sign_in(page, stack, user.email)

    # Catalog as a user: what can be connected, in plain words; the rest can be requested.
    staff = django_user_model.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)
    page.goto(f"{stack.url}/connections/connect/")
    accessible(page, stack, "catalog (user)")
    expect(page.locator("#broker-cards [data-broker]")).to_have_count(2)
    expect(page.locator("[data-broker=sandbox]")).to_contain_text("A demo brokerage with paper accounts")
    expect(page.get_by_text("Ask an administrator")).to_have_count(0)
    page.get_by_role("button", name="Request Alpaca").click()
    expect(page.locator("#messages")).to_contain_text("we told the administrators you would like Alpaca")
    expect(page.locator("[data-broker=alpaca] [data-requested]")).to_be_visible()
    page.wait_for_load_state()
    page.screenshot(path=str(SCREENSHOTS / "catalog.png"), full_page=True)
    page.fill("#broker-search", "zzz")
    expect(page.locator("[data-search-status]")).to_have_text("No broker matches “zzz”.")
    page.fill("#broker-search", "coin")
    expect(page.locator("[data-broker=coinbase]")).to_be_visible()
    expect(page.locator("[data-broker=sandbox]")).to_be_hidden()

    # Staff hear about Alpaca once, however many people ask.
    second = Browser(stack)
    second.login(other_user.email, PASSWORD)
    second.post("/connections/request/alpaca/")
    assert BrokerRequest.objects.filter(broker_slug="alpaca").count() == 2
    (notice,) = server_mail(stack)
    assert notice["Subject"] == "[brokerlink] A user asked for Alpaca"
    assert notice["To"] == staff.email

    # Nickname: the card leads with the account's name, the broker second.
    connect_sandbox(page, stack)
    sandbox_conn = Connection.objects.get(user=user, broker_slug="sandbox")
    page.fill("#nickname", "Retirement")
    page.get_by_role("button", name="Save name").click()
    expect(page.locator("h1#connection-name")).to_have_text("Retirement")
    page.goto(f"{stack.url}/connections/")
    card = page.locator(f"#card-{sandbox_conn.pk}")
    expect(card.locator("h2")).to_have_text("Retirement")
    expect(card.locator(".conn-card__broker")).to_contain_text("Sandbox Broker")
    # Reconnect is offered on a healthy connection too.
    expect(card.get_by_role("button", name="Reconnect Retirement at Sandbox Broker")).to_be_visible()

    # Coinbase: connect, then disconnect while its revoke endpoint is down.
    page.goto(f"{stack.url}/connections/connect/")
    page.get_by_role("button", name="Connect Coinbase").click()
    page.wait_for_url("**/sandbox/**")
    if page.locator("input[name=username]").count():
        page.fill("input[name=username]", DEMO_USERNAME)
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.locator("form button[type=submit]").first.click()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{stack.url}/connections/*/")
    cb = Connection.objects.get(user=user, broker_slug="coinbase")
    stack.sandbox.set_faults(coinbase["client_id"], outage=True)

    page.goto(f"{stack.url}/connections/")
    accessible(page, stack, "dashboard")
    page.locator(f"#disconnect-{cb.pk}").click()
    dialog = page.locator("dialog#disconnect-dialog")
    expect(dialog).to_be_visible()
    # Focus starts on Cancel; Cancel and Disconnect look different.
    assert page.evaluate("document.activeElement.id") == "disconnect-cancel"
    cancel_bg = dialog.locator("#disconnect-cancel").evaluate("e => getComputedStyle(e).backgroundColor")
    confirm_bg = dialog.locator("#disconnect-confirm").evaluate("e => getComputedStyle(e).backgroundColor")
    assert cancel_bg != confirm_bg
    accessible(page, stack, "disconnect dialog")
    page.keyboard.press("Enter")  # Cancel
    expect(dialog).to_have_count(0)
    assert Connection.objects.get(pk=cb.pk).status == ConnectionStatus.CONNECTED

    page.locator(f"#disconnect-{cb.pk}").click()
    dialog.locator("#disconnect-confirm").click()
    expect(dialog).to_contain_text("Not revoked at Coinbase.")
    expect(dialog.locator("[data-manual-revoke]")).to_have_attribute("href", "https://accounts.coinbase.com/")
    expect(dialog.get_by_role("button", name="Try revoking again")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "disconnect-not-revoked.png"))
    dialog.get_by_role("button", name="Close").click()

    # The broker is back: "Try revoking again" revokes.
    stack.sandbox.set_faults(coinbase["client_id"], outage=False)
    page.goto(f"{stack.url}/connections/{cb.pk}/")
    accessible(page, stack, "detail (disconnected)")
    page.get_by_role("button", name="Try revoking again").click()
    expect(page.locator("#messages")).to_contain_text("Revoked at Coinbase.")
    expect(page.get_by_role("button", name="Try revoking again")).to_have_count(0)
    assert stack.sandbox.counters(coinbase["client_id"])["grants"][0]["revoked"] is True

    # CSV: history and daily uptime of the disconnected connection.
    now = timezone.now()
    checks_store(
        [CheckRecord(cb.pk, cb.broker_slug, Check(now - timedelta(minutes=i + 1), i != 0, 80)) for i in range(4)]
    )
    history = list(csv.reader(io.StringIO(page.request.get(f"{stack.url}/connections/{cb.pk}/history.csv").text())))
    assert history[0] == HISTORY_HEADER
    events = [row[2] for row in history[1:]]
    assert events[0] == "Connected" and "Revocation not confirmed" in events and events[-1] == "Revoked at broker"
    assert {row[1] for row in history[1:]} == {"UTC"}
    uptime = list(csv.reader(io.StringIO(page.request.get(f"{stack.url}/connections/{cb.pk}/uptime.csv").text())))
    assert uptime[0] == UPTIME_HEADER
    stored = [c for c in rings_for([cb.pk])[cb.pk].checks if c.checked_at.date() == now.date()]  # all, < 60
    checks_today, passed_today = len(stored), sum(c.ok for c in stored)
    assert uptime[-1][2:] == [str(checks_today), str(passed_today), f"{100 * passed_today / checks_today:.2f}"]

    # Archive: off the dashboard, into the archive.
    page.goto(f"{stack.url}/connections/")
    page.locator(f"#archive-card-{cb.pk}").click()
    expect(page.locator("#messages")).to_contain_text("Archived")
    expect(page.locator(f"#card-{cb.pk}")).to_have_count(0)
    page.get_by_role("link", name="Archived connections (1)").click()
    expect(page.locator(f"#archived-{cb.pk}")).to_be_visible()
    accessible(page, stack, "archive")

    # Dark mode.
    page.emulate_media(color_scheme="dark")
    page.goto(f"{stack.url}/connections/")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 19, 26)"
    accessible(page, stack, "dashboard (dark)")
    page.screenshot(path=str(SCREENSHOTS / "dashboard-dark.png"), full_page=True)
    page.goto(f"{stack.url}/settings/")
    accessible(page, stack, "settings (dark)")
    page.emulate_media(color_scheme="light")

    # Catalog as staff: unconfigured brokers with a link to set them up.
    staff_page = page.context.browser.new_context().new_page()
    try:
        sign_in(staff_page, stack, staff.email)
        staff_page.goto(f"{stack.url}/connections/connect/")
        link = staff_page.get_by_role("link", name="Set up Alpaca in admin")
        expect(link).to_have_attribute("href", "/admin/brokers/brokerapp/add/?broker_slug=alpaca")
        expect(staff_page.get_by_role("button", name="Request Alpaca")).to_have_count(0)
        accessible(staff_page, stack, "catalog (staff)")
    finally:
        staff_page.context.close()


def test_phone_width_and_javascript_off(stack, user, chromium):
    stack.broker_app("sandbox", rotate_refresh=True)
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.set_default_timeout(15_000)
    try:
        page = phone.new_page()
        sign_in(page, stack, user.email)
        connect_sandbox(page, stack)
        conn = Connection.objects.get(user=user)
        for path, what in [
            ("/settings/", "settings"),
            ("/connections/", "dashboard"),
            ("/connections/connect/", "catalog"),
            ("/accounts/email/", "email addresses"),
            ("/accounts/password/change/", "change password"),
            (f"/connections/{conn.pk}/", "detail"),
        ]:
            page.goto(stack.url + path)
            no_sideways_scroll(page)
            accessible(page, stack, f"{what} at 390 px")
        page.goto(f"{stack.url}/settings/")
        page.screenshot(path=str(SCREENSHOTS / "settings-phone.png"), full_page=True)
    finally:
        phone.close()

    nojs = chromium.new_context(java_script_enabled=False)
    try:
        page = nojs.new_page()
        sign_in(page, stack, user.email)
        # The live indicator does not pretend to connect; it says how to get fresh data.
        assert "Connecting" not in page.locator("#live-indicator").inner_text()
        assert "Connecting" not in page.content()
        expect(page.locator("#live-indicator")).to_contain_text("Live updates need JavaScript")
        # Settings are plain forms.
        page.goto(f"{stack.url}/settings/")
        page.locator("#id_recovered").uncheck()
        page.locator("#save-notifications").click()
        expect(page.locator("#messages")).to_contain_text("Notification settings saved.")
        assert NotificationSettings.objects.get(user=user).recovered is False
        # The catalog search works and says when nothing matches.
        page.goto(f"{stack.url}/connections/connect/")
        page.fill("#broker-search", "zzz")
        page.get_by_role("button", name="Search").click()
        expect(page.locator("[data-search-status]")).to_have_text("No broker matches “zzz”.")
        # The disconnect page: one Cancel (focused first in order), one Disconnect, no "disconnecting…".
        page.goto(f"{stack.url}/connections/{conn.pk}/disconnect/")
        dialog = page.locator("#disconnect-dialog")
        expect(dialog.get_by_role("link", name="Cancel")).to_have_count(1)
        expect(dialog.get_by_role("button", name="Cancel")).to_have_count(0)
        assert "disconnecting" not in dialog.inner_text().lower()
        assert dialog.locator("#disconnect-confirm").inner_text().startswith("Disconnect ")
        page.locator("#disconnect-confirm").click()
        expect(page.locator("#messages")).to_contain_text("Revoked at Sandbox Broker")
    finally:
        nojs.close()

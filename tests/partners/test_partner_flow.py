"""A partner app uses brokerlink as its connection layer, over real HTTP against the sandbox:
it asks for a connect session with its key, sends Chromium to the link, gets the webhook and
the return redirect, and calls the broker through the proxy for its end user's new connection.
Then: reuse of a spent link, expiry, a reconnect (same account; another account is refused),
another app's key, and offboarding."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import expect

from api.models import ApiAuditEntry, Scope
from api.services import service_key_create
from connections.models import Connection, ConnectionEvent
from ops.models import WebhookDelivery, WebhookEndpoint
from ops.webhooks import webhook_deliver, webhook_secret_new
from partners.models import ConnectSession
from partners.services import partner_app_create
from tests.fixtures.sandbox import DEMO_PASSWORD, DEMO_USERNAME
from tests.support import wait_for

pytestmark = pytest.mark.browser

AXE = "/static/vendor/axe/axe-4.14.1.min.js"
AXE_RUN = """() => axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations
  .filter(v => v.impact === "serious" || v.impact === "critical")
  .map(v => v.id + ": " + v.help + " @ " + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(" | ")))"""
PARTNER_SCOPES = [Scope.CONNECT_SESSIONS, Scope.MANAGE_END_USERS, Scope.READ_STATUS, Scope.CALL]


class Partner:
    """The other app, in a few lines: its backend holds a service key; its web server
    (the receiver) takes the browser back at /done and the webhooks at /hooks."""

    def __init__(self, stack, receiver, name: str = "Tracker"):
        self.stack, self.receiver = stack, receiver
        self.return_url = f"http://127.0.0.1:{receiver.port}/done"
        self.app = partner_app_create(name=name, return_urls=[self.return_url], brand_colour="#0a7d5a")
        self.key, self.secret = service_key_create(
            name=name.lower(), scopes=PARTNER_SCOPES, app=self.app, expires_at=timezone.now() + timedelta(days=1)
        )
        endpoint = WebhookEndpoint(url=f"http://127.0.0.1:{receiver.port}/hooks", app=self.app)
        endpoint.secret = webhook_secret_new()
        endpoint.save()

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method, f"{self.stack.url}/api/v1/{path}", headers={"Authorization": f"Bearer {self.secret}"},
            timeout=30, **kwargs,
        )

    def connect_link(self, **body) -> str:
        answer = self.api("POST", "connect-sessions", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()["url"]

    def webhook(self, event: str, connection_id) -> dict:
        """The event as this app's endpoint receives it (the test delivers what the server queued)."""
        delivery = wait_for(
            lambda: WebhookDelivery.objects.filter(event=event, connection_id=connection_id).first(),
            what=f"the {event} delivery queued",
        )
        assert delivery.endpoint.app_id == self.app.pk
        webhook_deliver(delivery.pk)
        return next(m for m in self.receiver.messages if m["type"] == event and m["path"] == "/hooks"
                    and m["data"]["connection"]["id"] == str(connection_id))


def accessible(tab, server, what: str) -> None:
    """axe-core finds no serious or critical violation (contrast included)."""
    tab.add_script_tag(url=server.url + AXE)
    assert tab.evaluate(AXE_RUN) == [], what


def authorize_at_sandbox(tab, *, account: str | None = None) -> None:
    """Sign in at the sandbox (if asked) and allow, picking `account` when given."""
    tab.wait_for_url("**/sandbox/**")
    if "/login/" in tab.url:
        tab.fill("input[name=username]", DEMO_USERNAME)
        tab.fill("input[name=password]", DEMO_PASSWORD)
        tab.locator("form button[type=submit]").first.click()
    if account:
        tab.get_by_label(account).check()
    tab.get_by_role("button", name="Allow").click()


@pytest.fixture
def partner(stack, receiver):
    stack.broker_app("sandbox", rotate_refresh=True)
    return Partner(stack, receiver)


def test_partner_connects_an_end_user_uses_the_proxy_then_offboards(stack, partner, receiver, page, chromium):
    url = partner.connect_link(
        end_user={"id": "u-42", "email": "ada@tracker.example", "display_name": "Ada"},
        brokers=["sandbox"], return_url=partner.return_url,
    )
    token = url.rstrip("/").rsplit("/", 1)[-1]

    page.goto(url)
    # The link is spent and the browser holds the session: the address no longer has the token.
    page.wait_for_url(f"{stack.url}/connect/")
    assert token not in page.url
    expect(page.locator("[data-partner-app]")).to_have_text("Tracker")
    expect(page.locator("[data-connect-session]")).to_contain_text(
        "Tracker asks you to link a brokerage account for Ada"
    )
    expect(page.get_by_role("link", name="Sign in")).to_have_count(0)
    accessible(page, stack, "the hosted connect page")
    page.get_by_role("button", name="Connect Sandbox Broker").click()
    authorize_at_sandbox(page, account="Individual ••1234")

    page.wait_for_url(f"{partner.return_url}?*")
    back = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    assert back["status"] == "connected" and back["end_user_id"] == "u-42"
    connection = Connection.objects.get(pk=back["connection_id"])
    assert connection.user_id is None and connection.end_user.external_id == "u-42"
    assert connection.end_user.app_id == partner.app.pk

    hook = partner.webhook("connection.connected", connection.pk)
    assert hook["data"]["connection"]["end_user_id"] == "u-42"
    assert hook["data"]["connection"]["user_email"] == ""

    proxied = partner.api("GET", f"connections/{connection.pk}/proxy/v1/account")
    assert proxied.status_code == 200, proxied.text
    listed = partner.api("GET", "connections", params={"end_user_id": "u-42"}).json()
    assert [c["id"] for c in listed] == [str(connection.pk)] and listed[0]["end_user_id"] == "u-42"
    assert partner.api("GET", "connections", params={"end_user_id": "u-7"}).json() == []

    # The spent link, opened again (another browser, or the same one later): a clear page.
    other = chromium.new_context()
    try:
        again = other.new_page()
        answer = again.goto(url)
        assert answer.status == 410
        expect(again.locator("h1")).to_have_text("This link was already used")
        accessible(again, stack, "the used-link page")
    finally:
        other.close()

    actions = set(ApiAuditEntry.objects.filter(key=partner.key).values_list("action", flat=True))
    assert {"session_create", "session_open", "session_done", "proxy"} <= actions

    # Offboarding: every connection of the end user revoked in one call, then their data deleted.
    busy = partner.api("DELETE", "end-users/u-42")
    assert busy.status_code == 409
    off = partner.api("POST", "end-users/u-42/disconnect")
    assert off.status_code == 200, off.text
    (result,) = off.json()["connections"]
    assert result["revoked"] is True and result["connection"]["status"] == "disconnected"
    revoked = partner.webhook("connection.revoked", connection.pk)
    assert revoked["data"]["connection"]["end_user_id"] == "u-42"
    assert partner.api("DELETE", "end-users/u-42").status_code == 204
    assert partner.api("GET", f"connections/{connection.pk}").status_code == 404
    assert not Connection.objects.filter(pk=connection.pk).exists()


def test_reconnect_repairs_in_place_and_refuses_another_account(stack, partner, page, chromium):
    page.goto(partner.connect_link(end_user={"id": "u-1"}))
    page.get_by_role("button", name="Connect Sandbox Broker").click()
    authorize_at_sandbox(page, account="Individual ••1234")
    # No return_url: brokerlink's own finish page says what was linked for whom.
    expect(page.locator("[data-finished]")).to_contain_text("Your Sandbox Broker account")
    expect(page.locator("[data-finished]")).to_contain_text("is linked for Tracker")
    accessible(page, stack, "the finish page")
    connection = Connection.objects.get(end_user__external_id="u-1")
    events_before = connection.events.count()

    # Another browser, without JavaScript: a reconnect link names the account; signing in to
    # another one changes nothing.
    context = chromium.new_context(java_script_enabled=False)
    try:
        second = context.new_page()
        second.goto(partner.connect_link(connection_id=str(connection.pk), return_url=partner.return_url))
        expect(second.locator("[data-linked-account]")).to_contain_text("1234")
        second.get_by_role("button", name="Reconnect Sandbox Broker").click()
        authorize_at_sandbox(second, account="Margin ••5678")
        expect(second.locator("h1")).to_have_text("That is a different brokerage account")
        expect(second.locator("[data-partner-app]")).to_have_text("Tracker")
        expect(second.locator("[data-back]")).to_have_attribute(
            "href", f"{partner.return_url}?error=different_account&end_user_id=u-1"
        )
        assert Connection.objects.filter(end_user__external_id="u-1").count() == 1

        # Same session, same browser, the right account this time: repaired in place.
        second.get_by_role("button", name="Try again").click()
        authorize_at_sandbox(second, account="Individual ••1234")
        second.wait_for_url(f"{partner.return_url}?*")
        assert f"connection_id={connection.pk}" in second.url
    finally:
        context.close()
    connection.refresh_from_db()
    assert connection.status == "connected"
    kinds = list(connection.events.values_list("kind", flat=True))
    assert ConnectionEvent.Kind.RECONNECTED in kinds and ConnectionEvent.Kind.RECONNECT_REFUSED in kinds
    assert connection.events.count() > events_before  # history kept and extended
    assert set(ApiAuditEntry.objects.filter(key=partner.key).values_list("action", flat=True)) >= {
        "session_fail", "session_done"
    }


def test_expired_link_foreign_key_and_no_stack_traces(stack, partner, receiver, page):
    url = partner.connect_link(end_user={"id": "u-9"})
    ConnectSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = page.goto(url)
    assert answer.status == 410
    expect(page.locator("h1")).to_have_text("This link has expired")
    expect(page.locator("[data-partner-app]")).to_have_count(0)  # a stranger learns no app's name
    accessible(page, stack, "the expired-link page")

    answer = page.goto(f"{stack.url}/connect/s/not-a-real-token/")
    assert answer.status == 404
    expect(page.locator("h1")).to_have_text("This link is not valid")
    answer = page.goto(f"{stack.url}/connect/")
    assert answer.status == 404
    expect(page.locator("h1")).to_have_text("No connect session in this browser")

    # Another app's key: the first app's end users and connections do not exist for it.
    page.goto(partner.connect_link(end_user={"id": "u-9"}))
    page.get_by_role("button", name="Connect Sandbox Broker").click()
    authorize_at_sandbox(page)
    expect(page.locator("[data-finished]")).to_be_visible()
    connection = Connection.objects.get(end_user__external_id="u-9")
    rival = Partner(stack, receiver, name="Rival")
    assert rival.api("GET", f"connections/{connection.pk}").status_code == 404
    assert rival.api("GET", "connections", params={"end_user_id": "u-9"}).json() == []
    assert rival.api("POST", "connect-sessions", json={"connection_id": str(connection.pk)}).status_code == 404
    assert rival.api("POST", f"connections/{connection.pk}/disconnect").status_code == 404
    assert rival.api("POST", "end-users/u-9/disconnect").status_code == 404
    assert rival.api("DELETE", "end-users/u-9").status_code == 404
    # A return URL that is not on the app's list, even one character off: refused, no session.
    refused = partner.api("POST", "connect-sessions", json={"end_user": {"id": "u-9"},
                                                            "return_url": partner.return_url + "/"})
    assert refused.status_code == 400
    connection.refresh_from_db()
    assert connection.status == "connected"

"""Issue 27's "Low" list walked in Chromium, for the items whose other tests read HTML or
presenters only: what a person meets going through the pages."""

from __future__ import annotations

import re
import socket

import pytest
from playwright.sync_api import expect

from connections.models import Connection
from preferences.notify import channel_create
from preferences.tasks import notification_test_send
from tests.fixtures.sandbox import DEMO_PASSWORD, DEMO_USERNAME
from tests.pages.test_browser import connect_sandbox, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _apart(page, selector: str) -> None:
    """The boxes of these elements neither overlap nor touch."""
    boxes = [b for b in (el.bounding_box() for el in page.locator(selector).all()) if b]
    assert len(boxes) >= 2
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            gap_x = max(b["x"] - (a["x"] + a["width"]), a["x"] - (b["x"] + b["width"]))
            gap_y = max(b["y"] - (a["y"] + a["height"]), a["y"] - (b["y"] + b["height"]))
            assert max(gap_x, gap_y) >= 4, (a, b)


def test_check_now_disconnected_only_dashboard_deny_page_and_favicon(stack, user, page):
    stack.broker_app("sandbox")
    sign_in(page, stack, user.email)

    # Check now on the detail page: one history row for it.
    connect_sandbox(page, stack)
    connection = Connection.objects.get(user=user)
    page.goto(f"{stack.url}/connections/{connection.pk}/")
    page.locator("#connection-events").wait_for()
    before = page.locator("#connection-events li").filter(has_text="Checked on request").count()
    page.get_by_role("button", name=re.compile("^Check now")).first.click()
    expect(page.locator("#messages")).to_contain_text("Check")
    page.reload()
    expect(page.locator("#connection-events li").filter(has_text="Checked on request")).to_have_count(before + 1)
    expect(page.locator("#connection-events li").filter(has_text="Check requested")).to_have_count(0)

    # Disconnected and nothing else: "No connection is active" above the Disconnected list,
    # not the newcomer's "No brokerage accounts connected yet".
    page.goto(f"{stack.url}/connections/")
    page.locator(f"#disconnect-{connection.pk}").click()
    page.locator("dialog#disconnect-dialog #disconnect-confirm").click()
    expect(page.locator("dialog#disconnect-dialog")).to_contain_text("Revoked at Sandbox Broker.")
    page.goto(f"{stack.url}/connections/")
    expect(page.locator("#no-active")).to_contain_text("No connection is active")
    expect(page.locator("#disconnected-title")).to_be_visible()
    assert "No brokerage accounts connected yet" not in page.locator("main").inner_text()

    # Declining at the broker: the title once, no protocol code, buttons apart.
    page.goto(f"{stack.url}/connections/connect/")
    page.get_by_role("button", name="Connect Sandbox Broker").click()
    page.wait_for_url("**/sandbox/**")
    if "/sandbox/login/" in page.url:  # else still signed in at the sandbox from the connect above
        page.fill("input[name=username]", DEMO_USERNAME)
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.locator("form button[type=submit]").first.click()
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url(f"{stack.url}/connections/**")
    heading = page.locator("main h1").inner_text()
    text = page.locator("main").inner_text()
    assert text.count(heading) == 1
    assert "access_denied" not in text
    _apart(page, "main .connect-error__actions .button, main .connect-error__actions button")


    # What a browser asks for on its own (headless Chromium does not; the request is the same).
    icon = page.request.get(f"{stack.url}/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/")


def test_a_failed_channel_test_says_why(stack, user, page):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    channel_create(user=user, name="Gone", url=f"json://127.0.0.1:{port}/x")
    sign_in(page, stack, user.email)
    page.goto(f"{stack.url}/settings/")
    page.get_by_role("button", name="Send me a test").click()
    expect(page.locator("#messages")).to_contain_text("Test on its way")
    notification_test_send(user.pk)  # what the worker runs
    page.reload()
    expect(page.locator("[data-channel='Gone'] [data-field='test-result']")).to_have_text(
        "Last test: could not send (json://127.0.0.1 did not accept it, or could not be reached in time)"
    )

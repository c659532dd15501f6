"""An open page asks for nothing while its live stream is open, and polls while it is down, in
Chromium under the real CSP (no eval: the decision is live.js's, not an hx-trigger filter).

The server runs with a short poll interval and short streams (LIVE_POLL_SECONDS,
LIVE_STREAM_MAX_SECONDS), so "no poll" is proven by events that must come after one would
have happened: live.js dispatches `live-tick` on <body> at every poll interval, and a stream's
scheduled end (`bye`) is followed by a new stream request.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from connections.models import Connection, ConnectionStatus
from connections.state import connection_transition
from tests.harness import BrokerlinkServer
from tests.pages.test_browser import DASHBOARD_STREAM, card_badge, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COUNT_TICKS = """() => { window.__ticks = 0; window.__polling = 0;
  document.body.addEventListener("live-tick", e => {
    window.__ticks++; if (e.detail.polling) window.__polling++; }); }"""


@pytest.fixture(scope="module")
def brokerlink(django_db_setup, django_db_blocker):
    server = BrokerlinkServer.start(
        BROKER_READ_TIMEOUT_SECONDS="2", LIVE_POLL_SECONDS="0.5", LIVE_STREAM_MAX_SECONDS="4"
    )
    yield server
    server.stop()


@pytest.fixture
def stack(brokerlink, transactional_db):
    return brokerlink


def a_connection(user) -> Connection:
    return Connection.objects.create(
        user=user,
        broker_slug="sandbox",
        account_id="ACC-POLL",
        account_number_masked="••1234",
        status=ConnectionStatus.CONNECTED,
        access_token_sealed="sealed-a",
        refresh_token_sealed="sealed-r",
    )


class Traffic:
    """What the page asks the server (XHR/fetch and event streams) and logs as errors."""

    def __init__(self, page):
        self.requests: list[str] = []
        self.streams = 0
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _request(self, request) -> None:
        if urlsplit(request.url).path.endswith("/stream/"):
            self.streams += 1
        elif request.resource_type in ("xhr", "fetch"):
            self.requests.append(request.url)


def wait_in_page(page, condition, what: str, seconds: float = 20) -> None:
    """Until `condition()`; Playwright delivers the page's events while the page waits."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(50)


def test_open_stream_means_no_polling_and_no_console_error_across_scheduled_ends(stack, user, page):
    connection = a_connection(user)
    traffic = Traffic(page)
    sign_in(page, stack, user.email)
    expect(page.locator("#live-indicator [data-live-text]")).to_have_text("Live")
    page.evaluate(COUNT_TICKS)
    streams_before, requests_before = traffic.streams, list(traffic.requests)

    # Two scheduled stream ends (each "bye" then a new stream) and many poll intervals later ...
    wait_in_page(page, lambda: traffic.streams >= streams_before + 2, "two reopened streams")
    page.wait_for_function("() => window.__ticks >= 10")
    expect(page.locator("#live-indicator [data-live-text]")).to_have_text("Live")
    # ... not one request: the stream was open at every tick.
    assert page.evaluate("window.__polling") == 0
    assert traffic.requests == requests_before
    assert traffic.errors == []

    # The reopened stream still carries changes: the changed card and the summary strip
    # themselves, so the page asks for nothing. Whenever the change lands, in an open stream or
    # between a scheduled end and the next open (that case: the test below).
    connection_transition(connection=connection, to_status=ConnectionStatus.BROKER_OUTAGE, message="test")
    expect(card_badge(page, connection)).to_have_text("Waiting for the broker", timeout=5000)
    expect(page.locator("[data-count=waiting]")).to_have_text("1", timeout=5000)
    assert traffic.requests == requests_before
    assert traffic.errors == []


class HeldStream:
    """Holds the page's next request for an event stream (the one it opens after a scheduled
    end) until `release()`; later ones go through."""

    def __init__(self, page):
        self.page, self.held, self.urls = page, [], []
        page.route(self.is_stream, self._route)

    @staticmethod
    def is_stream(url: str) -> bool:
        return "/stream/" in url

    def _route(self, route) -> None:
        self.urls.append(route.request.url)
        if len(self.urls) == 1:
            self.held.append(route)
        else:
            route.continue_()

    def release(self) -> None:
        self.held.pop().continue_()


@pytest.mark.parametrize("where", ["dashboard", "detail"])
def test_a_change_between_a_streams_end_and_the_next_open_reaches_the_page(stack, user, page, where):
    connection = a_connection(user)
    traffic = Traffic(page)
    sign_in(page, stack, user.email)
    if where == "detail":
        page.goto(f"{stack.url}/connections/{connection.pk}/")
        badge = page.locator(f"#panel-{connection.pk} .badge").first
    else:
        badge = card_badge(page, connection)
    expect(page.locator("#live-indicator [data-live-text]")).to_have_text("Live")
    expect(badge).to_have_text("Checking")  # connected, no check yet

    # The stream ends on schedule ("bye") and the page asks for a new one, held on its way to
    # the server: the change is committed while this page has no stream at all.
    held = HeldStream(page)
    wait_in_page(page, lambda: held.held, "the page to ask for its next stream")
    connection_transition(connection=connection, to_status=ConnectionStatus.BROKER_OUTAGE, message="test")
    held.release()

    # The new stream learns from the page what it shows (?seen=) and sends what changed since.
    expect(badge).to_have_text("Waiting for the broker", timeout=10_000)
    assert "seen=" in held.urls[0]
    if where == "dashboard":
        expect(page.locator("[data-count=waiting]")).to_have_text("1")
        # Pushed, not fetched: the card and the strip came in the stream's events.
        assert [url for url in traffic.requests if "/card/" in url or "/summary/" in url] == []
    assert traffic.errors == []


def test_stream_cut_polls_and_stops_polling_when_it_is_back(stack, user, page):
    connection = a_connection(user)
    traffic = Traffic(page)
    page.route(DASHBOARD_STREAM, lambda route: route.fulfill(status=503, body="busy"))
    sign_in(page, stack, user.email)
    page.evaluate(COUNT_TICKS)
    expect(page.locator("#live-indicator [data-live-text]")).not_to_have_text("Live")

    # No stream: the card and the summary strip poll, and the card still follows a change.
    wait_in_page(page, lambda: sum("/card/" in url for url in traffic.requests) >= 2, "the card polling")
    wait_in_page(page, lambda: sum("/summary/" in url for url in traffic.requests) >= 2, "the summary polling")
    connection_transition(connection=connection, to_status=ConnectionStatus.BROKER_OUTAGE, message="test")
    expect(card_badge(page, connection)).to_have_text("Waiting for the broker", timeout=5000)

    # The stream is back (htmx's SSE extension retries by itself): polling stops.
    page.unroute(DASHBOARD_STREAM)
    expect(page.locator("#live-indicator [data-live-text]")).to_have_text("Live", timeout=20_000)
    settled = len(traffic.requests)  # a poll may have been in flight as the stream opened
    ticks = page.evaluate("window.__ticks")
    page.wait_for_function(f"() => window.__ticks >= {ticks + 6}")
    assert traffic.requests[settled + 1 :] == []
    assert page.evaluate("window.__polling") > 0  # (it did poll while the stream was cut)


def test_an_open_tab_follows_a_new_nickname_and_loses_an_archived_card(stack, user, page):
    from connections.services.edits import connection_archive, connection_rename

    connection = a_connection(user)
    gone = Connection.objects.create(
        user=user, broker_slug="sandbox", account_id="ACC-GONE", status=ConnectionStatus.DISCONNECTED
    )
    traffic = Traffic(page)
    sign_in(page, stack, user.email)
    expect(page.locator("#live-indicator [data-live-text]")).to_have_text("Live")
    expect(page.locator(f"#card-{gone.pk}")).to_be_visible()
    before = list(traffic.requests)

    connection_rename(connection, "Retirement")
    expect(page.locator(f"#card-{connection.pk} h2")).to_have_text("Retirement")
    connection_archive(gone)
    expect(page.locator(f"#card-{gone.pk}")).to_have_count(0)
    assert [url for url in traffic.requests[len(before) :] if "/card/" in url] == []
    assert traffic.errors == []

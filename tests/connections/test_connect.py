"""Connect and reconnect over real HTTP: a browser-like client, brokerlink, and the sandbox broker."""

from brokers.models import BrokerApp
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from engine.models import EngineState


def kinds(connection: Connection) -> list[str]:
    return list(connection.events.order_by("created_at", "id").values_list("kind", flat=True))


def test_catalog_lists_brokers_to_connect_and_to_request(browser, sandbox_app):
    page = browser.get("/connections/connect/")
    assert page.status_code == 200
    assert 'action="/connections/connect/sandbox/"' in page.text
    assert "Connect Sandbox Broker" in page.text
    # Not configured here: a user can ask for it, not "ask an administrator" to do admin work.
    assert "Not available here yet" in page.text
    assert "Request Charles Schwab" in page.text
    assert "Ask an administrator" not in page.text and "Admin ›" not in page.text

    searched = browser.get("/connections/connect/?q=sandbox")
    assert "Connect Sandbox Broker" in searched.text
    assert "Not available here yet" not in searched.text
    nothing = browser.get("/connections/connect/?q=zzz")
    assert "No broker matches “zzz”." in nothing.text


def test_connect_end_to_end(browser, sandbox_app, user):
    app, client = sandbox_app
    hop = browser.authorize("/connections/connect/sandbox/", account_label="Margin ••5678")
    assert hop.params["iss"] == browser.server.sandbox.url
    assert hop.location.startswith(app.effective_redirect_uri.replace("http://127.0.0.1:8000", browser.server.url))

    page = browser.follow(hop.location)
    assert page.status_code == 200
    assert "Connected Margin ••5678." in page.text

    connection = Connection.objects.get(user=user)
    assert page.url == f"{browser.server.url}/connections/{connection.pk}/"
    assert connection.status == ConnectionStatus.CONNECTED
    assert connection.account_number_masked == "••5678"
    assert connection.broker_app == app
    assert connection.access_token and connection.refresh_token
    assert connection.access_expires_at is not None
    assert kinds(connection) == [ConnectionEvent.Kind.CONNECTED]
    # Tokens never reach the page.
    assert connection.access_token not in page.text and connection.refresh_token not in page.text

    counters = browser.server.sandbox.counters(client["client_id"])
    assert counters["codes_issued"] == 1
    assert counters["account_calls"] == 1


def test_connecting_the_same_account_twice_updates_one_row(browser, sandbox_app, user):
    browser.connect()
    first = Connection.objects.get(user=user)
    first_access = first.access_token

    page = browser.connect()
    assert "Reconnected" in page.text
    assert Connection.objects.filter(user=user).count() == 1
    again = Connection.objects.get(user=user)
    assert again.pk == first.pk
    assert again.access_token != first_access
    assert kinds(again) == [ConnectionEvent.Kind.CONNECTED, ConnectionEvent.Kind.RECONNECTED]


def test_reconnect_keeps_id_and_history_and_resets_failures(browser, sandbox_app, user):
    browser.connect()
    connection = Connection.objects.get(user=user)
    Connection.objects.filter(pk=connection.pk).update(status=ConnectionStatus.NEEDS_REAUTH)
    EngineState.objects.filter(pk=connection.pk).update(
        consecutive_failures=4,
        last_error_category="auth",
        last_error_message="Sandbox Broker no longer accepts this authorization (invalid_grant).",
    )

    page = browser.reconnect(connection.pk)
    assert page.status_code == 200
    assert "Reconnected" in page.text
    after = Connection.objects.get(pk=connection.pk)
    assert after.status == ConnectionStatus.CONNECTED
    assert after.consecutive_failures == 0
    assert after.last_error_category == ""
    assert Connection.objects.filter(user=user).count() == 1
    assert kinds(after) == [ConnectionEvent.Kind.CONNECTED, ConnectionEvent.Kind.RECONNECTED]


def test_reconnect_refuses_a_different_brokerage_account(browser, sandbox_app, user):
    browser.connect(account_label="Individual ••1234")
    connection = Connection.objects.get(user=user)
    before = (connection.access_token_sealed, connection.status, connection.account_id)

    page = browser.reconnect(connection.pk, account_label="Margin ••5678")
    assert page.status_code == 400
    assert "That is a different brokerage account" in page.text
    assert "Nothing changed" in page.text
    after = Connection.objects.get(pk=connection.pk)
    assert (after.access_token_sealed, after.status, after.account_id) == before
    assert Connection.objects.filter(user=user).count() == 1
    # The refusal is in the history; the tokens the broker issued were handed back.
    assert kinds(after) == [ConnectionEvent.Kind.CONNECTED, ConnectionEvent.Kind.RECONNECT_REFUSED]
    refused = after.events.get(kind=ConnectionEvent.Kind.RECONNECT_REFUSED)
    assert "different Sandbox Broker account" in refused.message
    grants = browser.server.sandbox.counters(sandbox_app[1]["client_id"])["grants"]
    assert [g["revoked"] for g in grants] == [False, True]


def test_not_configured_broker_cannot_start(browser, stack):
    BrokerApp.objects.create(broker_slug="tradier", client_id="", enabled=True)
    response = browser.post("/connections/connect/tradier/")
    assert response.status_code == 400
    assert "This broker is not configured" in response.text

"""Disconnect over real HTTP: revocation at the sandbox, tokens always wiped, the user told."""

import ast
import inspect

import requests
from django.utils import timezone

from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.services import disconnect
from engine.models import EngineState
from engine.sweep import sweep_run


def connected(browser, user) -> Connection:
    page = browser.connect()
    assert page.status_code == 200
    return Connection.objects.get(user=user)


def assert_wiped(connection: Connection) -> Connection:
    after = Connection.objects.get(pk=connection.pk)
    assert after.status == ConnectionStatus.DISCONNECTED
    assert after.access_token_sealed == "" and after.refresh_token_sealed == ""
    assert after.disconnected_at is not None
    return after


def test_confirmation_page_and_htmx_fragment(browser, sandbox_app, user):
    connection = connected(browser, user)
    page = browser.get(f"/connections/{connection.pk}/disconnect/")
    assert page.status_code == 200
    assert "<html" in page.text
    assert "revoke its access at Sandbox Broker" in page.text

    fragment = browser.get(f"/connections/{connection.pk}/disconnect/", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert "<dialog" in fragment.text
    # Looking is not doing.
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.CONNECTED


def test_disconnect_revokes_at_the_broker(browser, sandbox_app, user, stack):
    _, client = sandbox_app
    connection = connected(browser, user)
    access = connection.access_token

    page = browser.disconnect(connection.pk)
    assert page.status_code == 200
    assert "Revoked at Sandbox Broker" in page.text
    assert_wiped(connection)

    counters = stack.sandbox.counters(client["client_id"])
    assert counters["revocations"] == 2  # refresh token, then access token
    (grant,) = counters["grants"]
    assert grant["revoked"] is True
    # The token really is dead at the broker.
    dead = requests.get(
        f"{stack.sandbox.url}/v1/account", headers={"Authorization": f"Bearer {access}"}, timeout=10
    )
    assert dead.status_code == 401

    events = list(connection.events.order_by("created_at", "id").values_list("kind", flat=True))
    assert events[-2:] == [ConnectionEvent.Kind.DISCONNECTED, ConnectionEvent.Kind.REVOKED]


def test_disconnect_with_broker_down_still_wipes_tokens_and_says_so(browser, sandbox_app, user, stack):
    _, client = sandbox_app
    connection = connected(browser, user)
    stack.sandbox.set_faults(client["client_id"], outage=True)

    page = browser.disconnect(connection.pk)
    assert page.status_code == 200
    assert "Not revoked: Sandbox Broker had a server error (HTTP 503)." in page.text
    assert "Revoke access by hand at" in page.text
    assert_wiped(connection)
    failed = connection.events.get(kind=ConnectionEvent.Kind.REVOCATION_FAILED)
    assert failed.category == "broker_fault"
    assert "HTTP 503" in failed.message


def test_disconnect_with_broker_unreachable_still_wipes_tokens(browser, sandbox_app, user, stack):
    _, client = sandbox_app
    connection = connected(browser, user)
    stack.sandbox.set_faults(client["client_id"], stall_seconds=4)  # server read timeout is 2 s

    page = browser.disconnect(connection.pk)
    assert "Not revoked: Sandbox Broker did not answer within 2 seconds." in page.text
    assert_wiped(connection)


def test_after_disconnect_only_a_new_authorization_brings_it_back(browser, sandbox_app, user, stack):
    _, client = sandbox_app
    connection = connected(browser, user)
    browser.disconnect(connection.pk)
    codes_before = stack.sandbox.counters(client["client_id"])["codes_issued"]
    # Off the sweep's schedule: no next check, so the claim's index does not hold the row.
    assert EngineState.objects.get(pk=connection.pk).next_check_at is None
    assert sweep_run().claimed == 0

    # "Connect again" on a disconnected connection is a full authorization, and reuses the row.
    page = browser.reconnect(connection.pk)
    assert page.status_code == 200
    after = Connection.objects.get(pk=connection.pk)
    assert after.status == ConnectionStatus.CONNECTED
    assert after.next_check_at is not None and after.next_check_at <= timezone.now()  # due at once
    assert sweep_run().checked == 1
    assert after.access_token
    assert stack.sandbox.counters(client["client_id"])["codes_issued"] == codes_before + 1
    assert Connection.objects.filter(user=user).count() == 1


def test_disconnect_twice_is_harmless(browser, sandbox_app, user, stack):
    _, client = sandbox_app
    connection = connected(browser, user)
    browser.disconnect(connection.pk)
    page = browser.disconnect(connection.pk)
    assert page.status_code == 200
    assert "already disconnected" in page.text
    assert stack.sandbox.counters(client["client_id"])["revocations"] == 2


def test_try_revoking_again_after_the_broker_comes_back(browser, sandbox_app, user, stack):
    _, client = sandbox_app
    connection = connected(browser, user)
    access = connection.access_token
    stack.sandbox.set_faults(client["client_id"], outage=True)
    page = browser.disconnect(connection.pk)
    assert "Try revoking again" in page.text
    after = assert_wiped(connection)
    # The copy kept for the retry is sealed, never the token in clear.
    assert after.revoke_pending_sealed and access not in after.revoke_pending_sealed

    # Still down: the retry says so, keeps the copy and the button.
    page = browser.post(f"/connections/{connection.pk}/revoke/")
    assert "Not revoked: Sandbox Broker had a server error (HTTP 503)." in page.text
    assert "Try revoking again" in page.text

    stack.sandbox.set_faults(client["client_id"], outage=False)
    page = browser.post(f"/connections/{connection.pk}/revoke/")
    assert "Revoked at Sandbox Broker" in page.text
    assert "Try revoking again" not in page.text
    assert Connection.objects.get(pk=connection.pk).revoke_pending_sealed == ""
    (grant,) = stack.sandbox.counters(client["client_id"])["grants"]
    assert grant["revoked"] is True
    dead = requests.get(f"{stack.sandbox.url}/v1/account", headers={"Authorization": f"Bearer {access}"}, timeout=10)
    assert dead.status_code == 401
    # Nothing left to revoke: a third press is harmless.
    page = browser.post(f"/connections/{connection.pk}/revoke/")
    assert "nothing more to revoke" in page.text


def test_archive_and_remove_only_disconnected_connections(browser, sandbox_app, user):
    connection = connected(browser, user)
    page = browser.post(f"/connections/{connection.pk}/archive/")
    assert "Only a disconnected connection can be archived." in page.text
    page = browser.post(f"/connections/{connection.pk}/remove/")
    assert "Disconnect the connection before removing it." in page.text
    assert Connection.objects.filter(pk=connection.pk, archived_at__isnull=True).exists()

    browser.disconnect(connection.pk)
    dashboard = browser.get("/connections/")
    assert f'id="card-{connection.pk}"' in dashboard.text  # disconnected, still in view
    page = browser.post(f"/connections/{connection.pk}/archive/")
    assert "Archived" in page.text and f'id="card-{connection.pk}"' not in page.text
    assert "Archived connections (1)" in page.text
    assert f'id="archived-{connection.pk}"' in browser.get("/connections/archived/").text

    page = browser.post(f"/connections/{connection.pk}/remove/")
    assert "and its history" in page.text
    assert not Connection.objects.filter(pk=connection.pk).exists()


def test_the_revocation_steps_are_written_once():
    """A disconnect and "Try revoking again" ask the broker through one function, so a change to
    what a revocation does (the copy kept, the event recorded) cannot reach only one of them."""
    tree = ast.parse(inspect.getsource(disconnect))
    callers = {
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for call in ast.walk(function)
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "_revoke_at_broker"
    }
    assert callers == {"_revocation_attempt"}

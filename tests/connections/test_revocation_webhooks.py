"""Revocation webhooks say what happened at the broker, received by a real consumer.

A person disconnects over real HTTP (brokerlink under uvicorn, the sandbox mounted); the
deliveries brokerlink queued are sent to an integrator's endpoint on 127.0.0.1, which
verifies each one with the Standard Webhooks library before reading it."""

from __future__ import annotations

from standardwebhooks.webhooks import Webhook

from connections.models import Connection
from ops.models import WebhookDelivery, WebhookEndpoint
from ops.webhooks import webhook_deliver, webhook_secret_new
from tests.connections.test_disconnect import connected
from tests.support import wait_for


def endpoint(receiver) -> str:
    secret = webhook_secret_new()
    wanted = ["connection.revoked", "connection.revocation_confirmed"]
    row = WebhookEndpoint(url=receiver.http_url(), event_types=wanted)
    row.secret = secret
    row.save()
    return secret


def received(receiver, secret: str, count: int) -> list[dict]:
    """Send what brokerlink queued (as the worker would), then what the consumer verified."""
    wait_for(lambda: WebhookDelivery.objects.count() >= count, timeout=10, what=f"{count} queued deliveries")
    for delivery in WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING):
        webhook_deliver(delivery.pk)
    return [Webhook(secret).verify(body, headers) for headers, body in receiver.requests]


def test_a_confirmed_revocation_says_so(browser, sandbox_app, user, receiver):
    secret = endpoint(receiver)
    connection = connected(browser, user)
    browser.disconnect(connection.pk)

    (event,) = received(receiver, secret, 1)
    assert event["type"] == "connection.revoked"
    data = event["data"]
    assert data["revoked_at_broker"] is True and data["revocation"] == {"confirmed": True, "retry_possible": False}
    assert data["previous_status"] == "connected" and data["connection"]["status"] == "disconnected"


def test_an_unconfirmed_revocation_says_so_and_a_later_confirmation_is_an_event(
    browser, sandbox_app, user, stack, receiver
):
    _, client = sandbox_app
    secret = endpoint(receiver)
    connection = connected(browser, user)
    stack.sandbox.set_faults(client["client_id"], outage=True)
    browser.disconnect(connection.pk)

    (revoked,) = received(receiver, secret, 1)
    assert revoked["type"] == "connection.revoked"
    assert revoked["data"]["revoked_at_broker"] is False
    assert revoked["data"]["revocation"] == {
        "confirmed": False,
        "retry_possible": True,
        "reason": {"category": "broker_fault", "message": "Sandbox Broker had a server error (HTTP 503)."},
    }

    # Still down: nothing new happened at the broker, nothing is sent.
    browser.post(f"/connections/{connection.pk}/revoke/")
    assert WebhookDelivery.objects.count() == 1

    stack.sandbox.set_faults(client["client_id"], outage=False)
    browser.post(f"/connections/{connection.pk}/revoke/")
    assert Connection.objects.get(pk=connection.pk).revoke_pending_sealed == ""
    first, confirmed = received(receiver, secret, 2)
    assert first == revoked
    assert confirmed["type"] == "connection.revocation_confirmed"
    assert confirmed["data"]["revoked_at_broker"] is True
    assert confirmed["data"]["revocation"] == {"confirmed": True, "retry_possible": False}
    assert confirmed["data"]["connection"]["id"] == str(connection.pk)

"""Outgoing webhooks against a real receiver on 127.0.0.1 that verifies every signature."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse
from django.utils import timezone

from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.state import connection_transition
from ops.models import WebhookDelivery, WebhookEndpoint
from ops.tasks import webhooks_retry_due
from ops.webhooks import webhook_deliver, webhook_signature, webhook_signature_verify

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-test-0123456789abcdef"


class Receiver:
    """An integrator's endpoint: verifies the signature, answers the scripted statuses in turn."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = webhook_signature_verify(
                    SECRET, self.headers["X-Brokerlink-Timestamp"], body, self.headers["X-Brokerlink-Signature"]
                )
                status = (receiver.statuses.pop(0) if receiver.statuses else 200) if valid else 401
                receiver.received.append({"valid": valid, "status": status, "body": json.loads(body)})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/brokerlink"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def endpoint_for(url: str, **fields) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(url=url, **fields)
    endpoint.secret = SECRET
    endpoint.save()
    return endpoint


@pytest.fixture
def connection(user):
    return Connection.objects.create(
        user=user,
        broker_slug="sandbox",
        account_id="a1",
        account_number_masked="****7788",
        status=ConnectionStatus.DEGRADED,
        environment="live",
    )


def test_signature_verification_for_integrators():
    body = b'{"id":"1"}'
    ts = str(int(time.time()))
    header = webhook_signature(SECRET, ts, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert webhook_signature_verify(SECRET, ts, body, header)
    assert not webhook_signature_verify("wrong-secret", ts, body, header)
    assert not webhook_signature_verify(SECRET, ts, b'{"id":"2"}', header)
    assert not webhook_signature_verify(SECRET, str(int(ts) + 1), body, header)
    old = str(int(time.time()) - 3600)
    assert not webhook_signature_verify(SECRET, old, body, webhook_signature(SECRET, old, body))
    assert webhook_signature_verify(SECRET, old, body, webhook_signature(SECRET, old, body), tolerance_seconds=None)


def test_a_recovery_is_delivered_after_one_failed_attempt_with_backoff(connection, settings):
    settings.WEBHOOK_BACKOFF_SECONDS = 1
    with Receiver([500]) as receiver:
        endpoint_for(receiver.url)
        connection_transition(connection=connection, to_status=ConnectionStatus.CONNECTED, message="Heartbeat passed.")
        (delivery,) = WebhookDelivery.objects.all()
        assert delivery.event == "recovered"

        # First attempt: the receiver verifies the signature and answers 500.
        assert webhook_deliver(delivery.pk) == "pending"
        delivery.refresh_from_db()
        assert delivery.attempts == 1 and delivery.response_status == 500
        assert "HTTP 500" in delivery.last_error
        assert delivery.next_attempt_at > timezone.now()  # backing off
        assert webhooks_retry_due() == 0  # not due yet

        time.sleep(1.1)
        assert webhooks_retry_due() == 1
        delivery.refresh_from_db()
        assert delivery.status == WebhookDelivery.Status.DELIVERED and delivery.attempts == 2
        assert delivery.response_status == 200 and delivery.delivered_at

        # Delivered means delivered: nothing is sent again.
        assert webhook_deliver(delivery.pk) == "skipped"

    assert [r["status"] for r in receiver.received] == [500, 200]
    assert all(r["valid"] for r in receiver.received)
    body = receiver.received[1]["body"]
    assert body == receiver.received[0]["body"]  # same event id on retry
    assert body["type"] == "recovered" and body["id"] == str(delivery.event_id)
    assert body["connection"] == {
        "id": str(connection.pk),
        "broker": "sandbox",
        "account": "****7788",
        "status": "connected",
        "user_email": "ada@example.com",
    }
    assert set(body) == {"id", "type", "created_at", "connection"}


def test_a_bad_signature_is_rejected_by_the_receiver(connection):
    with Receiver([]) as receiver:
        endpoint = endpoint_for(receiver.url)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret_sealed="")
        endpoint.refresh_from_db()
        endpoint.secret = "not-the-shared-secret"
        endpoint.save()
        connection_transition(connection=connection, to_status=ConnectionStatus.FAILED, message="Gave up.")
        (delivery,) = WebhookDelivery.objects.all()
        assert delivery.event == "failed"
        assert webhook_deliver(delivery.pk) == "pending"
    assert receiver.received[0]["valid"] is False and receiver.received[0]["status"] == 401


S, K = ConnectionStatus, ConnectionEvent.Kind


@pytest.mark.parametrize(
    ("start", "to", "kind", "expected"),
    [
        (S.PENDING, S.CONNECTED, K.CONNECTED, "connected"),
        (S.NEEDS_REAUTH, S.CONNECTED, K.RECONNECTED, "connected"),
        (S.CONNECTED, S.NEEDS_REAUTH, K.STATUS_CHANGED, "needs_reauth"),
        (S.BROKER_OUTAGE, S.CONNECTED, K.STATUS_CHANGED, "recovered"),
        (S.CONNECTED, S.DISCONNECTED, K.DISCONNECTED, "disconnected"),
        (S.DEGRADED, S.FAILED, K.STATUS_CHANGED, "failed"),
        (S.CONNECTED, S.DEGRADED, K.STATUS_CHANGED, None),
        (S.CONNECTED, S.CHECKING, K.STATUS_CHANGED, None),
    ],
)
def test_which_transitions_become_events(connection, start, to, kind, expected):
    endpoint_for("http://127.0.0.1:9/never")
    Connection.objects.filter(pk=connection.pk).update(status=start)
    connection.status = start
    connection_transition(connection=connection, to_status=to, kind=kind)
    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ([expected] if expected else [])


def test_a_manual_check_that_recovers_is_a_recovery(connection):
    endpoint_for("http://127.0.0.1:9/never", event_types=["recovered"])
    connection_transition(connection=connection, to_status=ConnectionStatus.CHECKING)
    connection_transition(connection=connection, to_status=ConnectionStatus.CONNECTED)
    connection_transition(connection=connection, to_status=ConnectionStatus.NEEDS_REAUTH)  # not subscribed
    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ["recovered"]


def test_endpoints_in_admin_keep_the_secret_write_only(client, django_user_model):
    root = django_user_model.objects.create_superuser(email="root@example.com", password="x" * 12)
    client.force_login(root)
    response = client.post(
        reverse("admin:ops_webhookendpoint_add"),
        {
            "name": "CRM",
            "url": "https://crm.example.com/hooks",
            "enabled": "on",
            "event_types": ["failed"],
            "new_secret": SECRET,
            "deliveries-TOTAL_FORMS": "0",
            "deliveries-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == SECRET and endpoint.event_types == ["failed"]
    page = client.get(reverse("admin:ops_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert SECRET not in page and endpoint.secret_sealed not in page
    log = client.get(reverse("admin:ops_webhookdelivery_changelist"))
    assert log.status_code == 200

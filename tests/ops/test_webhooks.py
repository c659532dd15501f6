"""Outgoing webhooks to the Standard Webhooks spec, against a real receiver on 127.0.0.1 that
verifies every delivery with the spec's own Python library (`standardwebhooks` from PyPI)."""

from __future__ import annotations

import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.state import connection_event_record, connection_transition
from engine.models import Notification
from engine.notifications import notification_send
from ops.models import WebhookDelivery, WebhookEndpoint
from ops.tasks import webhooks_retry_due
from ops.webhooks import (
    EVENTS,
    RETRY_SCHEDULE,
    retry_delay,
    webhook_deliver,
    webhook_endpoint_rotate_secret,
    webhook_replay,
    webhook_secret_new,
)
from tests.support import wait_for, with_second_factor

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver:
    """An integrator's endpoint: verifies each delivery with `standardwebhooks` using the
    secrets it currently knows (`self.secrets`), then answers the scripted statuses in turn."""

    def __init__(self, secrets: list[str], statuses: list[int] | None = None, port: int = 0):
        self.secrets = list(secrets)
        self.statuses = list(statuses or [])
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers.items())
                verified = {}
                for secret in receiver.secrets:
                    try:
                        Webhook(secret).verify(body, headers)
                        verified[secret] = True
                    except WebhookVerificationError:
                        verified[secret] = False
                valid = any(verified.values())
                status = (receiver.statuses.pop(0) if receiver.statuses else 200) if valid else 401
                receiver.received.append(
                    {"valid": valid, "verified": verified, "status": status, "body": json.loads(body),
                     "headers": headers}
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/brokerlink"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def endpoint_for(url: str, secret: str, **fields) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(url=url, **fields)
    endpoint.secret = secret
    endpoint.save()
    return endpoint


@pytest.fixture
def connection(user):
    return Connection.objects.create(
        user=user, broker_slug="sandbox", account_id="a1", account_number_masked="••7788",
        status=ConnectionStatus.DEGRADED, environment="live",
    )


def test_a_delivery_is_signed_to_the_spec_and_verified_by_the_library(connection, settings):
    secret = webhook_secret_new()
    assert secret.startswith("whsec_")
    with Receiver([secret]) as receiver:
        endpoint_for(receiver.url, secret)
        connection_transition(connection=connection, to_status=ConnectionStatus.CONNECTED, message="Heartbeat passed.")
        (delivery,) = WebhookDelivery.objects.all()
        assert webhook_deliver(delivery.pk) == "delivered"
    (got,) = receiver.received
    assert got["valid"]
    assert got["headers"]["webhook-id"] == str(delivery.event_id)
    assert got["headers"]["webhook-signature"].startswith("v1,")
    assert got["body"] == {
        "type": "connection.fixed",
        "version": 1,
        "timestamp": got["body"]["timestamp"],
        "data": {
            "connection": {"id": str(connection.pk), "broker": "sandbox", "environment": "live",
                           "account": "••7788", "status": "connected", "user_email": "ada@example.com",
                           "end_user_id": None},
            "previous_status": "degraded",
            "reason": {"category": "", "message": "Heartbeat passed."},
        },
    }
    assert WebhookEndpoint.objects.get().last_success_at is not None


def test_receivers_rotate_secrets_without_downtime(connection):
    old = webhook_secret_new()
    with Receiver([old]) as receiver:
        endpoint = endpoint_for(receiver.url, old)

        def send_one(to_status):
            connection_transition(connection=connection, to_status=to_status)
            delivery = WebhookDelivery.objects.order_by("-created_at").first()
            assert webhook_deliver(delivery.pk) == "delivered"
            return receiver.received[-1]

        before = send_one(ConnectionStatus.NEEDS_REAUTH)
        assert before["verified"] == {old: True}
        assert len(before["headers"]["webhook-signature"].split(" ")) == 1

        new = webhook_endpoint_rotate_secret(endpoint)
        # During the rotation: two signatures; a receiver with either secret verifies.
        receiver.secrets = [old, new]
        during = send_one(ConnectionStatus.CONNECTED)
        assert during["verified"] == {old: True, new: True}
        assert len(during["headers"]["webhook-signature"].split(" ")) == 2

        # The rotation period ends: only the new secret signs.
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(previous_secret_expires_at=timezone.now())
        after = send_one(ConnectionStatus.FAILED)
        assert after["verified"] == {old: False, new: True}
    assert [r["body"]["type"] for r in receiver.received] == [
        "connection.broken", "connection.fixed", "connection.broken"]


def test_a_wrong_secret_is_refused_by_the_receiver(connection):
    with Receiver([webhook_secret_new()]) as receiver:
        endpoint_for(receiver.url, webhook_secret_new())
        connection_transition(connection=connection, to_status=ConnectionStatus.FAILED, message="Gave up.")
        (delivery,) = WebhookDelivery.objects.all()
        assert webhook_deliver(delivery.pk) == "pending"
    assert receiver.received[0]["valid"] is False and receiver.received[0]["status"] == 401


def test_the_retry_schedule_spans_more_than_a_day_with_jitter():
    assert sum(RETRY_SCHEDULE) >= 24 * 3600
    delays = [retry_delay(1) for _ in range(50)]
    assert all(4 <= d <= 6 for d in delays) and len(set(delays)) > 1  # 5 s +/- 20 %
    total_low = sum(retry_delay(n) for n in range(1, len(RETRY_SCHEDULE) + 1))
    assert total_low >= 0.8 * 24 * 3600
    assert retry_delay(len(RETRY_SCHEDULE) + 1) is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_worker_retries_until_the_receiver_is_back(connection, celery_cluster):
    """Compressed timings: the whole schedule scaled by 1/1000 (5 s -> 5 ms, 30 min -> 1.8 s)."""
    secret = webhook_secret_new()
    port = _closed_port()
    endpoint_for(f"http://127.0.0.1:{port}/hooks/brokerlink", secret)
    env = {"BROKERLINK_WEBHOOK_SCHEDULE_SCALE": "0.001"}
    with celery_cluster(workers=1, beats=0, env=env):
        connection_transition(connection=connection, to_status=ConnectionStatus.NEEDS_REAUTH, message="Dead grant.")
        (delivery,) = WebhookDelivery.objects.all()
        wait_for(lambda: WebhookDelivery.objects.get(pk=delivery.pk).attempts >= 2, timeout=60,
                 what="two attempts while the receiver is down")
        failed = WebhookDelivery.objects.get(pk=delivery.pk)
        assert failed.status == "pending" and "No answer" in failed.last_error
        with Receiver([secret], port=port) as receiver:
            wait_for(lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "delivered", timeout=60,
                     what="delivered once the receiver is back")
    delivery.refresh_from_db()
    assert delivery.attempts >= 3
    (got,) = receiver.received
    assert got["valid"] and got["headers"]["webhook-id"] == str(delivery.event_id)
    assert got["body"]["type"] == "connection.broken" and got["body"]["data"]["needs_reauth"] is True


def test_an_endpoint_failing_through_the_whole_schedule_is_disabled_and_its_owner_told(
    connection, settings, django_user_model
):
    settings.WEBHOOK_SCHEDULE_SCALE = 0.00001
    owner = django_user_model.objects.create_user(email="ops@example.com", password="x" * 12)
    endpoint = endpoint_for(f"http://127.0.0.1:{_closed_port()}/hooks", webhook_secret_new(), owner=owner)
    connection_transition(connection=connection, to_status=ConnectionStatus.FAILED, message="Gave up.")
    (delivery,) = WebhookDelivery.objects.all()

    def given_up() -> bool:
        webhooks_retry_due()  # what the beat does every 30 s
        return WebhookDelivery.objects.get(pk=delivery.pk).status != "pending"

    wait_for(given_up, timeout=30, interval=0.02, what="the schedule ran out")
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == len(RETRY_SCHEDULE) + 1
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "Disabled after failing every attempt" in endpoint.disabled_reason
    (message,) = mail.outbox
    assert message.to == ["ops@example.com"] and "disabled the webhook endpoint" in message.subject
    # Disabled: new events are not queued for it.
    connection_transition(connection=connection, to_status=ConnectionStatus.CONNECTED)
    assert WebhookDelivery.objects.count() == 1


def test_an_endpoint_that_recovered_in_between_stays_enabled(connection, settings):
    settings.WEBHOOK_SCHEDULE_SCALE = 0.00001
    endpoint = endpoint_for(f"http://127.0.0.1:{_closed_port()}/hooks", webhook_secret_new())
    connection_transition(connection=connection, to_status=ConnectionStatus.FAILED)
    (delivery,) = WebhookDelivery.objects.all()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=len(RETRY_SCHEDULE))
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(last_success_at=timezone.now() + timedelta(seconds=1))
    assert webhook_deliver(delivery.pk) == "failed"
    endpoint.refresh_from_db()
    assert endpoint.enabled and not mail.outbox


def test_replay_sends_a_delivered_event_again_with_the_same_id(connection):
    secret = webhook_secret_new()
    with Receiver([secret]) as receiver:
        endpoint_for(receiver.url, secret)
        connection_transition(connection=connection, to_status=ConnectionStatus.CONNECTED)
        (delivery,) = WebhookDelivery.objects.all()
        assert webhook_deliver(delivery.pk) == "delivered"
        assert webhook_deliver(delivery.pk) == "skipped"  # delivered means delivered...
        assert webhook_replay(delivery)  # ...until an admin replays it
        assert webhook_deliver(delivery.pk) == "delivered"
    first, again = receiver.received
    assert again["valid"] and again["headers"]["webhook-id"] == first["headers"]["webhook-id"]
    assert again["body"] == first["body"]


S, K = ConnectionStatus, ConnectionEvent.Kind


@pytest.mark.parametrize(
    ("start", "to", "kind", "expected"),
    [
        (S.PENDING, S.CONNECTED, K.CONNECTED, "connection.connected"),
        (S.NEEDS_REAUTH, S.CONNECTED, K.RECONNECTED, "connection.reconnected"),
        (S.CONNECTED, S.NEEDS_REAUTH, K.STATUS_CHANGED, "connection.broken"),
        (S.CONNECTED, S.DEGRADED, K.STATUS_CHANGED, "connection.broken"),
        (S.DEGRADED, S.BROKER_OUTAGE, K.STATUS_CHANGED, None),
        (S.DEGRADED, S.FAILED, K.STATUS_CHANGED, "connection.broken"),
        (S.BROKER_OUTAGE, S.CONNECTED, K.STATUS_CHANGED, "connection.fixed"),
        # Told once the broker answered the revocation (tests/connections/test_revocation_webhooks.py).
        (S.CONNECTED, S.DISCONNECTED, K.DISCONNECTED, None),
        (S.CONNECTED, S.CHECKING, K.STATUS_CHANGED, None),
    ],
)
def test_which_transitions_become_events(connection, start, to, kind, expected):
    endpoint_for("http://127.0.0.1:9/never", webhook_secret_new())
    Connection.objects.filter(pk=connection.pk).update(status=start)
    connection.status = start
    connection_transition(connection=connection, to_status=to, kind=kind)
    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ([expected] if expected else [])


def test_refresh_failures_and_expiry_warnings_are_events(connection):
    endpoint_for("http://127.0.0.1:9/never", webhook_secret_new())
    connection_event_record(
        connection=connection, kind=K.REFRESH_FAILED, category="auth", message="Sandbox no longer accepts it."
    )
    deadline = timezone.now() + timedelta(hours=20)
    notification_send(connection=connection, kind=Notification.Kind.EXPIRY_WARNING, incident_at=deadline)
    failed, expiring = WebhookDelivery.objects.order_by("created_at")
    assert failed.event == "connection.refresh_failed"
    assert failed.payload["data"]["needs_reauth"] is True
    assert failed.payload["data"]["reason"] == {"category": "auth", "message": "Sandbox no longer accepts it."}
    assert expiring.event == "connection.expiring" and expiring.payload["data"]["deadline"] == deadline.isoformat()
    assert set(EVENTS) >= {failed.event, expiring.event}


def test_a_manual_check_that_recovers_is_a_fix(connection):
    endpoint_for("http://127.0.0.1:9/never", webhook_secret_new(), event_types=["connection.fixed"])
    connection_transition(connection=connection, to_status=ConnectionStatus.CHECKING)
    connection_transition(connection=connection, to_status=ConnectionStatus.CONNECTED)
    connection_transition(connection=connection, to_status=ConnectionStatus.NEEDS_REAUTH)  # not subscribed
    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ["connection.fixed"]


def test_admin_shows_a_generated_secret_once_and_rotates_it(client, django_user_model):
    root = django_user_model.objects.create_superuser(email="root@example.com", password="x" * 12)
    with_second_factor(root)
    client.force_login(root)
    response = client.post(
        reverse("admin:ops_webhookendpoint_add"),
        {
            "name": "CRM", "url": "https://crm.example.com/hooks", "enabled": "on",
            "event_types": ["connection.broken"],
            "deliveries-TOTAL_FORMS": "0", "deliveries-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_") and endpoint.secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    page = client.get(reverse("admin:ops_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert endpoint.secret not in page and endpoint.secret_sealed not in page

    old = endpoint.secret
    rotated = client.post(
        reverse("admin:ops_webhookendpoint_changelist"), {"action": "rotate_secret", "_selected_action": [endpoint.pk]}
    )
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.previous_secret == old
    assert endpoint.secret in rotated.content.decode() and old not in rotated.content.decode()
    page = client.get(reverse("admin:ops_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert "the previous secret also signs until" in page

    bad = client.post(
        reverse("admin:ops_webhookendpoint_change", args=[endpoint.pk]),
        {"name": "CRM", "url": "https://crm.example.com/hooks", "enabled": "on", "new_secret": "short",
         "deliveries-TOTAL_FORMS": "0", "deliveries-INITIAL_FORMS": "0"},
    )
    assert bad.status_code == 200 and "whsec_" in bad.content.decode()
    assert client.get(reverse("admin:ops_webhookdelivery_changelist")).status_code == 200


def test_admin_replays_a_delivered_event(client, django_user_model, connection):
    root = with_second_factor(django_user_model.objects.create_superuser(email="root@example.com", password="x" * 12))
    client.force_login(root)
    endpoint_for("http://127.0.0.1:9/never", webhook_secret_new())
    connection_transition(connection=connection, to_status=ConnectionStatus.CONNECTED)
    (delivery,) = WebhookDelivery.objects.all()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="delivered", attempts=1, delivered_at=timezone.now())
    response = client.post(
        reverse("admin:ops_webhookdelivery_changelist"), {"action": "replay", "_selected_action": [delivery.pk]}
    )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 0 and delivery.delivered_at is None

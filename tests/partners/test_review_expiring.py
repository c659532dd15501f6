"""Review of issue 28: a partner app hears `connection.expiring` for its end users' connections
(docs/integrating.md promises it; brokerlink sends end users no email, so the webhook is the
only warning before a hard re-authentication deadline)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from connections.models import Connection, ConnectionStatus
from engine.notifications import expiry_warnings_send
from ops.models import WebhookDelivery, WebhookEndpoint
from ops.webhooks import webhook_secret_new
from partners.services import end_user_upsert, partner_app_create

pytestmark = pytest.mark.django_db(transaction=True)


def endpoint(url: str, app=None) -> WebhookEndpoint:
    row = WebhookEndpoint(url=url, app=app)
    row.secret = webhook_secret_new()
    row.save()
    return row


@override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
def test_an_end_users_deadline_reaches_its_app_as_connection_expiring_once():
    tracker, rival = partner_app_create(name="Tracker"), partner_app_create(name="Rival")
    tracker_hook = endpoint("https://tracker.example/hooks", tracker)
    endpoint("https://rival.example/hooks", rival)
    endpoint("https://ops.example/hooks")
    now = timezone.now()
    connection = Connection.objects.create(
        end_user=end_user_upsert(app=tracker, external_id="u-1", email="ada@tracker.example"),
        broker_slug="sandbox", account_id="a", status=ConnectionStatus.CONNECTED,
        grant_started_at=now - timedelta(days=6), reauth_deadline_at=now + timedelta(hours=20),
    )
    expiry_warnings_send(now=now)
    expiry_warnings_send(now=now + timedelta(minutes=5))  # the next sweep: still once per deadline
    deliveries = WebhookDelivery.objects.filter(connection_id=connection.pk)
    assert [(d.endpoint_id, d.event) for d in deliveries] == [(tracker_hook.pk, "connection.expiring")]
    data = deliveries.get().payload["data"]
    assert data["connection"]["end_user_id"] == "u-1" and data["deadline"]
    assert mail.outbox == []  # still no email to an end user

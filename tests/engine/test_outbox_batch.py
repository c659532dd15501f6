"""The engine's batch write announces a status change once, through the outbox: one live
message (its score and the rest of the card included), one webhook; a row whose status did
not change but whose card did (its score) is still told to open pages, by the engine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Connection, ConnectionStatus
from engine.check import connections_check
from engine.models import EngineState
from ops.models import WebhookDelivery, WebhookEndpoint
from ops.webhooks import webhook_secret_new
from tests.support import live_messages

pytestmark = pytest.mark.django_db(transaction=True)


def claimed(connection: Connection, owner: str) -> Connection:
    EngineState.objects.filter(pk=connection.pk).update(
        lease_owner=owner, lease_until=timezone.now() + timedelta(minutes=5)
    )
    connection.refresh_from_db()
    return connection


def test_a_batch_status_change_reaches_open_pages_and_webhooks_once(world):
    endpoint = WebhookEndpoint(url="http://127.0.0.1:9/never")
    endpoint.secret = webhook_secret_new()
    endpoint.save()
    fixed = world.connection(status=ConnectionStatus.DEGRADED, health_score=10)
    steady = world.connection(health_score=0)  # connected, its score will move
    rows = [claimed(fixed, "test"), claimed(steady, "test")]
    with live_messages() as heard:
        connections_check(rows, owner="test")
    fixed.refresh_from_db()
    assert fixed.status == ConnectionStatus.CONNECTED
    told = [(change[1], change[2]) for changes in heard for change in changes]
    assert told.count((str(fixed.pk), "connected")) == 1
    assert [pk for pk, _ in told].count(str(fixed.pk)) == 1
    assert [pk for pk, _ in told].count(str(steady.pk)) == 1  # its score changed
    assert list(WebhookDelivery.objects.values_list("event", "connection_id")) == [("connection.fixed", fixed.pk)]

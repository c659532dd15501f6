"""One status change is announced once, after commit, by the outbox (connections/outbox.py):
one live message for open pages, one webhook delivery per endpoint, nothing for a rollback,
and a consumer that fails does not stop the others."""

from __future__ import annotations

import pytest
from django.db import transaction

from connections import outbox
from connections.models import Connection, ConnectionStatus
from connections.state import connection_transition
from ops.models import WebhookDelivery, WebhookEndpoint
from ops.webhooks import webhook_secret_new
from tests.support import live_messages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def endpoint():
    endpoint = WebhookEndpoint(url="http://127.0.0.1:9/never")
    endpoint.secret = webhook_secret_new()
    endpoint.save()
    return endpoint


def make(user, n: int = 1) -> list[Connection]:
    return [
        Connection.objects.create(
            user=user, broker_slug="sandbox", account_id=f"a{i}", status=ConnectionStatus.CONNECTED, environment="live"
        )
        for i in range(n)
    ]


def test_one_status_change_is_one_live_message_and_one_webhook(user, endpoint):
    (connection,) = make(user)
    with live_messages() as heard, transaction.atomic():
        connection_transition(connection=connection, to_status=ConnectionStatus.NEEDS_REAUTH, message="refused")
        # Inside the transaction nobody has heard of it yet.
        assert not WebhookDelivery.objects.exists()
    assert [[change[1:3] for change in changes] for changes in heard] == [[[str(connection.pk), "needs_reauth"]]]
    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ["connection.broken"]


def test_a_batch_of_changes_is_one_live_message(user, endpoint):
    first, second = make(user, 2)
    with live_messages() as heard, transaction.atomic(), outbox.events_batched():
        connection_transition(connection=first, to_status=ConnectionStatus.DEGRADED)
        connection_transition(connection=second, to_status=ConnectionStatus.DEGRADED)
    assert len(heard) == 1
    assert sorted(change[1] for change in heard[0]) == sorted([str(first.pk), str(second.pk)])
    assert WebhookDelivery.objects.filter(event="connection.broken").count() == 2


def test_a_rolled_back_change_is_announced_to_nobody(user, endpoint):
    (connection,) = make(user)
    received = []

    def listener(sender, events, **kwargs):
        received.extend(events)

    outbox.event_committed.connect(listener)
    try:
        with live_messages() as heard:
            with pytest.raises(RuntimeError), transaction.atomic():
                connection_transition(connection=connection, to_status=ConnectionStatus.FAILED)
                raise RuntimeError("the rest of the change failed")
            with pytest.raises(RuntimeError), transaction.atomic(), outbox.events_batched():
                connection_transition(connection=connection, to_status=ConnectionStatus.FAILED)
                raise RuntimeError("the batch failed")
    finally:
        outbox.event_committed.disconnect(listener)
    assert heard == [] and received == []
    assert not WebhookDelivery.objects.exists()
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.CONNECTED
    assert not connection.events.exists()


def test_a_failing_consumer_stops_no_other_and_undoes_nothing(user, endpoint):
    (connection,) = make(user)
    after = []

    def broken(sender, events, **kwargs):
        raise RuntimeError("a consumer's bug")

    def listener(sender, events, **kwargs):
        after.extend(event.to_status for event in events)

    outbox.event_committed.connect(broken)
    outbox.event_committed.connect(listener)
    try:
        with live_messages() as heard:
            connection_transition(connection=connection, to_status=ConnectionStatus.DEGRADED)
    finally:
        outbox.event_committed.disconnect(broken)
        outbox.event_committed.disconnect(listener)
    assert after == ["degraded"]
    assert len(heard) == 1
    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ["connection.broken"]
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.DEGRADED


def test_a_failing_webhook_stops_neither_live_pages_nor_other_events(user, endpoint, monkeypatch):
    from ops import webhooks

    first, second = make(user, 2)
    real = webhooks.webhook_enqueue

    def enqueue(event_type, data, **kwargs):
        if data["connection"]["id"] == str(first.pk):
            raise RuntimeError("the queue refused")
        return real(event_type, data, **kwargs)

    monkeypatch.setattr(webhooks, "webhook_enqueue", enqueue)
    with live_messages() as heard, transaction.atomic(), outbox.events_batched():
        connection_transition(connection=first, to_status=ConnectionStatus.DEGRADED)
        connection_transition(connection=second, to_status=ConnectionStatus.DEGRADED)
    assert len(heard) == 1 and len(heard[0]) == 2
    assert list(WebhookDelivery.objects.values_list("connection_id", flat=True)) == [second.pk]

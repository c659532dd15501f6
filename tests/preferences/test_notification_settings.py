"""Notification settings decide what the engine sends, by email and to a personal channel
(an Apprise json:// URL pointed at a receiver on 127.0.0.1)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from connections.models import Connection, ConnectionStatus
from connections.state import connection_transition
from engine.notifications import expiry_warnings_send, notifications_dispatch
from preferences.models import NotificationChannel, NotificationSettings
from preferences.notify import channel_create, channel_display, notification_send_test
from tests.engine.history import checks

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quick_recovery(settings):
    settings.ENGINE_NOTIFY_AFTER_CHECKS = 1
    settings.SITE_URL = "https://brokerlink.example.com"


def a_connection(user, **fields) -> Connection:
    values = {
        "user": user,
        "broker_slug": "sandbox",
        "account_id": "A-1",
        "account_number_masked": "••0001",
        "status": ConnectionStatus.CONNECTED,
        "nickname": "Retirement",
    }
    values.update(fields)
    return Connection.objects.create(**values)


def needs_you(user):
    conn = a_connection(user)
    connection_transition(connection=conn, to_status=ConnectionStatus.NEEDS_REAUTH, message="invalid_grant")
    notifications_dispatch()


def broker_outage(user):
    conn = a_connection(user)
    connection_transition(connection=conn, to_status=ConnectionStatus.BROKER_OUTAGE, message="HTTP 503")
    notifications_dispatch()


def expiring(user):
    now = timezone.now()
    a_connection(user, grant_started_at=now - timedelta(hours=23), reauth_deadline_at=now + timedelta(hours=1))
    expiry_warnings_send()


def recovered(user):
    """An incident told with "needs you" on, then the recovery (what the toggle decides)."""
    conn = a_connection(user)
    connection_transition(connection=conn, to_status=ConnectionStatus.NEEDS_REAUTH, message="invalid_grant")
    prefs = NotificationSettings.objects.get(user=user)
    was, prefs.needs_you = prefs.needs_you, True
    prefs.save()
    notifications_dispatch()
    prefs.needs_you = was
    prefs.save()
    mail.outbox.clear()
    connection_transition(connection=conn, to_status=ConnectionStatus.CONNECTED, message="reconnected")
    checks(conn, at=timezone.now(), ok=True, latency_ms=50)
    notifications_dispatch()


EVENTS = {
    "needs_you": (needs_you, "Reconnect your Sandbox Broker account on brokerlink"),
    "broker_outage": (broker_outage, "Sandbox Broker is having an outage: brokerlink is waiting for it"),
    "expiring": (expiring, "Your Sandbox Broker authorization expires soon"),
    "recovered": (recovered, "Your Sandbox Broker connection on brokerlink works again"),
}


@pytest.mark.parametrize("kind", list(EVENTS))
@pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
def test_each_kind_toggle_decides_email_and_channel(kind, on, user, receiver):
    NotificationSettings.objects.create(user=user, **{kind: on})
    channel_create(user=user, name="Webhook", url=receiver.url())
    happen, subject = EVENTS[kind]
    receiver.messages.clear()
    happen(user)
    if on:
        assert [m.subject for m in mail.outbox] == [subject]
        assert "Retirement" in mail.outbox[0].body or kind == "expiring"
        assert receiver.titles()[-1] == subject
    else:
        assert mail.outbox == []
        assert subject not in receiver.titles()


def test_email_off_still_reaches_the_channel(user, receiver):
    NotificationSettings.objects.create(user=user, email=False)
    channel_create(user=user, name="Webhook", url=receiver.url())
    needs_you(user)
    assert mail.outbox == []
    assert receiver.titles() == ["Reconnect your Sandbox Broker account on brokerlink"]
    assert "Retirement" in receiver.messages[0]["message"]


def test_a_broken_channel_does_not_stop_the_email(user, receiver):
    channel_create(user=user, name="Gone", url="json://127.0.0.1:9/nowhere")
    channel_create(user=user, name="Webhook", url=receiver.url())
    needs_you(user)
    assert len(mail.outbox) == 1
    assert len(receiver.messages) == 1


def test_the_channel_url_is_sealed_and_shown_without_credentials(user):
    url = "ntfys://alice:s3cret-pass@ntfy.example.com/private-topic"
    channel = channel_create(user=user, name="Phone", url=url)
    stored = NotificationChannel.objects.get(pk=channel.pk)
    assert "s3cret" not in stored.url_sealed and "private-topic" not in stored.url_sealed
    assert stored.url == url
    assert stored.display == channel_display(url) == "ntfys://ntfy.example.com"


def test_send_me_a_test_goes_everywhere_on(user, receiver):
    channel_create(user=user, name="Webhook", url=receiver.url())
    delivery = notification_send_test(user=user)
    assert delivery.sent == ["email", "Webhook"]
    assert mail.outbox[0].subject == "brokerlink test notification"
    assert receiver.titles() == ["brokerlink test notification"]

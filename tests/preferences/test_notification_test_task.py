"""Issue 24, medium 1: "Send me a test" never holds a web request.

A channel pointed at a black-hole port (accepts, never answers) used to hold the request for
Apprise's timeouts, and twenty of them exhausted the web's database pool. Now the view asks a
worker and answers at once with one generic sentence; the outcome per channel appears in the
owner's channel list when the worker has sent it.
"""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse

from preferences import tasks
from preferences.models import NotificationChannel
from preferences.notify import channel_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def black_hole():
    """A port that accepts connections (the kernel completes the handshake) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def queued(monkeypatch):
    """The queue: what the view hands to the worker (the broker itself is not under test)."""
    calls: list[int] = []
    monkeypatch.setattr(tasks.notification_test_send, "delay", lambda user_id: calls.append(user_id))
    return calls


def test_a_black_hole_channel_does_not_hold_the_request(client, user, black_hole, queued,
                                                         django_capture_on_commit_callbacks):
    channel_create(user=user, name="Hole", url=f"json://127.0.0.1:{black_hole}/x")
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("preferences:notification_test"), follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    assert "Test on its way: check your channels." in text
    assert "Hole" in text and "could not send" not in text  # no verdict in the web answer
    assert queued == [user.pk]
    assert "Last test: sending" in text


def test_the_worker_gives_up_on_a_black_hole_within_the_servers_timeouts(user, black_hole, receiver):
    """In the worker, a channel that never answers fails after Apprise's own timeouts (no
    user-set `rto`), is recorded as not sent, and does not stop the next channel."""
    channel_create(user=user, name="Hole", url=f"json://127.0.0.1:{black_hole}/x")
    channel_create(user=user, name="Webhook", url=receiver.url())
    tasks.notification_test_send(user.pk)
    outcomes = dict(NotificationChannel.objects.filter(user=user).values_list("name", "last_test_ok"))
    assert outcomes == {"Hole": False, "Webhook": True}
    assert receiver.titles() == ["brokerlink test notification"]


def test_the_worker_records_each_outcome_for_the_owner_only(client, user, receiver, queued,
                                                            django_capture_on_commit_callbacks):
    channel_create(user=user, name="Webhook", url=receiver.url())
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("preferences:notification_test"))
    tasks.notification_test_send(queued[0])  # what the worker runs
    assert receiver.titles() == ["brokerlink test notification"]
    assert NotificationChannel.objects.get(user=user).last_test_ok is True
    page = client.get(reverse("preferences:settings")).content.decode()
    assert "Last test: sent" in page


def test_a_second_test_within_the_cooldown_is_refused(client, user, receiver, queued, settings,
                                                      django_capture_on_commit_callbacks):
    settings.NOTIFICATION_TEST_COOLDOWN_SECONDS = 60
    channel_create(user=user, name="Webhook", url=receiver.url())
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("preferences:notification_test"))
        second = client.post(reverse("preferences:notification_test"), follow=True)
    assert "wait a minute" in second.content.decode()
    assert queued == [user.pk]


def test_channels_per_person_are_capped(client, user, settings, receiver):
    settings.NOTIFICATION_CHANNELS_MAX = 2
    client.force_login(user)
    for n in range(3):
        response = client.post(reverse("preferences:channel_add"), {"name": f"c{n}", "url": receiver.url(f"h{n}")})
    assert response.status_code == 400
    assert "the most brokerlink keeps per person" in response.content.decode()
    assert NotificationChannel.objects.filter(user=user).count() == 2


def test_a_refused_channel_form_names_what_is_allowed(client, user, settings):
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = False
    client.force_login(user)
    response = client.post(reverse("preferences:channel_add"), {"name": "x", "url": "json://169.254.169.254/"})
    assert response.status_code == 400
    assert "jsons://" in response.content.decode()
    assert not NotificationChannel.objects.filter(user=user).exists()


def test_a_failed_channel_test_says_why(client, user, queued, django_capture_on_commit_callbacks):
    """Issue 27 (Low): "Last test: could not send" with no reason left the owner guessing."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: refused at once
    channel_create(user=user, name="Gone", url=f"json://127.0.0.1:{port}/x")
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("preferences:notification_test"))
    tasks.notification_test_send(queued[0])
    page = client.get(reverse("preferences:settings")).content.decode()
    assert "Last test: could not send (json://127.0.0.1" in page
    assert "did not accept it, or could not be reached in time)" in page

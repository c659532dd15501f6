"""preferences.selectors and preferences.services: what the settings page reads and changes,
in process; and the page's answers through them (404 for another person's channel)."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from preferences.models import NotificationChannel, NotificationSettings
from preferences.notify import channel_create
from preferences.selectors import notification_channels_for, notification_test_has_target
from preferences.services import channel_remove, time_zone_choose, time_zone_detected

pytestmark = pytest.mark.django_db

URL = "json://127.0.0.1:9/x"


def test_the_channels_listed_are_the_persons_own(user, other_user):
    mine = channel_create(user=user, name="Mine", url=URL)
    channel_create(user=other_user, name="Theirs", url=URL)
    assert list(notification_channels_for(user)) == [mine]


def test_a_test_has_a_target_by_email_or_an_enabled_channel(user, django_user_model):
    assert notification_test_has_target(user)  # email on (the default) and an address
    NotificationSettings.objects.create(user=user, email=False)
    user = django_user_model.objects.get(pk=user.pk)
    assert not notification_test_has_target(user)
    channel = channel_create(user=user, name="Mine", url=URL)
    assert notification_test_has_target(user)
    NotificationChannel.objects.filter(pk=channel.pk).update(enabled=False)
    assert not notification_test_has_target(user)


def test_email_on_without_an_address_is_no_target(django_user_model):
    nobody = django_user_model.objects.create_user(email="x@example.com", password="correct horse battery")
    nobody.email = ""
    assert not notification_test_has_target(nobody)


def test_removing_a_channel_only_removes_ones_own(user, other_user):
    mine = channel_create(user=user, name="Mine", url=URL)
    theirs = channel_create(user=other_user, name="Theirs", url=URL)
    assert channel_remove(user=user, channel_id=theirs.pk) is None
    assert channel_remove(user=user, channel_id=uuid.uuid4()) is None
    removed = channel_remove(user=user, channel_id=mine.pk)
    assert removed.name == "Mine"
    assert list(NotificationChannel.objects.values_list("pk", flat=True)) == [theirs.pk]


def test_the_page_answers_404_for_another_persons_channel(client, user, other_user):
    theirs = channel_create(user=other_user, name="Theirs", url=URL)
    mine = channel_create(user=user, name="Mine", url=URL)
    client.force_login(user)
    assert client.post(reverse("preferences:channel_remove", args=[theirs.pk])).status_code == 404
    assert NotificationChannel.objects.filter(pk=theirs.pk).exists()
    page = client.post(reverse("preferences:channel_remove", args=[mine.pk]), follow=True)
    assert page.redirect_chain == [(reverse("preferences:settings"), 302)]
    assert "Channel “Mine” removed." in page.content.decode()


def test_a_detected_zone_never_overrides_a_chosen_one(user, django_user_model):
    time_zone_detected(user=user, name="Europe/Paris")
    assert django_user_model.objects.get(pk=user.pk).time_zone == "Europe/Paris"
    stale = django_user_model.objects.get(pk=user.pk)
    time_zone_choose(user=user, name="Asia/Tokyo")
    assert user.time_zone == "Asia/Tokyo"
    stale.time_zone = ""  # a request that read the row before the choice
    time_zone_detected(user=stale, name="America/New_York")
    assert django_user_model.objects.get(pk=user.pk).time_zone == "Asia/Tokyo"


def test_a_nothing_to_send_test_is_refused_with_its_message(client, user, settings):
    NotificationSettings.objects.create(user=user, email=False)
    client.force_login(user)
    page = client.post(reverse("preferences:notification_test"), follow=True)
    assert "Nothing to send to: email is off and you have no channels." in page.content.decode()

"""Changes the settings page makes that are not notification delivery (preferences.notify
creates channels and asks for a test): removing a channel, the person's time zone."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model

from preferences.models import NotificationChannel

logger = logging.getLogger(__name__)


def channel_remove(*, user, channel_id) -> NotificationChannel | None:
    """Delete the person's channel and return it (its name for the page); None when they have
    no channel with this id, someone else's included, so the page answers 404 either way."""
    channel = NotificationChannel.objects.filter(pk=channel_id, user=user).first()
    if channel is None:
        return None
    channel.delete()
    return channel


def time_zone_choose(*, user, name: str) -> None:
    """The zone the person chose on the settings page (a valid name: preferences.timezones)."""
    user.time_zone = name
    user.save(update_fields=["time_zone"])


def time_zone_detected(*, user, name: str) -> None:
    """The browser's own zone, kept only while the person has none: a zone they chose is never
    overridden, even by a request that raced with their choice (the row is checked, not the
    copy in memory)."""
    if not user.time_zone:
        get_user_model().objects.filter(pk=user.pk, time_zone="").update(time_zone=name)

"""Reads of a person's notification choices for the settings page (preferences/views.py), so
the views only parse the request, call these and render."""

from __future__ import annotations

from django.db.models import QuerySet

from preferences.models import NotificationChannel
from preferences.notify import notification_settings_for


def notification_channels_for(user) -> QuerySet[NotificationChannel]:
    """The person's own channels (enabled or not), oldest first (the model's ordering)."""
    return NotificationChannel.objects.filter(user=user)


def notification_test_has_target(user) -> bool:
    """Whether a test has anywhere to go: email on with an address, or an enabled channel.
    The channels are only counted when the email is not enough."""
    wanted = notification_settings_for(user)
    return bool(wanted.email and user.email) or NotificationChannel.objects.filter(user=user, enabled=True).exists()

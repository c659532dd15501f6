"""A person's notification choices and personal channels."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from vault.fields import SealedField


class NotificationSettings(models.Model):
    """What a person wants to hear about, and whether by email. No row = the defaults (all on)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings"
    )
    needs_you = models.BooleanField("Needs you (reconnect needed, failed)", default=True)
    recovered = models.BooleanField("Recovered", default=True)
    expiring = models.BooleanField("Expiring soon", default=True)
    broker_outage = models.BooleanField("Broker outage", default=True)
    email = models.BooleanField("Send by email", default=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The last "Send me a test": asked at, and (once the worker sent it) whether the email went.
    test_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    test_email_sent = models.BooleanField(null=True, blank=True, editable=False)

    class Meta:
        # Already plural: admin would add an "s" ("Notification settingss").
        verbose_name = "notification settings"
        verbose_name_plural = "notification settings"

    def __str__(self) -> str:
        return f"notification settings of {self.user}"


class NotificationChannel(models.Model):
    """A personal channel beyond email (ntfy, Slack, Telegram…) as an Apprise URL.

    The URL carries the channel's credentials (a webhook key, a bot token), so it is sealed
    like broker tokens; pages show only its scheme and host."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_channels")
    name = models.CharField(max_length=80)
    url_sealed = models.TextField(blank=True, default="", editable=False)
    url = SealedField("url_sealed")
    # Where it points, without credentials: shown on the settings page instead of the URL.
    display = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Outcome of the last test, shown to the owner in their channel list only.
    last_test_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_test_ok = models.BooleanField(null=True, blank=True, editable=False)
    last_test_error = models.CharField(max_length=300, blank=True, default="", editable=False)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.display})"

"""Service keys for the HTTP API, and the audit trail of what they did."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Scope(models.TextChoices):
    READ_STATUS = "status:read", "Read connections and their health; trigger a check"
    CALL = "broker:call", "Call the broker through brokerlink (proxy), trigger a refresh"
    READ_TOKENS = "tokens:read", "Read access tokens"
    CONNECT_SESSIONS = "connect:sessions", "Create connect sessions for the app's end users (app keys only)"
    MANAGE_END_USERS = "end_users:manage", "Disconnect the app's end users' connections and delete end users"


class ServiceKey(models.Model):
    """An API key for a service outside brokerlink. Created by an admin, shown once, stored as a
    SHA-256 hash (the key is 256 random bits, so a slow password hash adds nothing)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    # Public part of the key ("blk_<prefix>_<secret>"): finds the row without the secret.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    # Empty: every broker.
    broker_slugs = models.JSONField(default=list, blank=True)
    # The people whose connections the key covers. None listed: no connection at all, unless
    # `all_users`, an explicit choice only a superuser or a holder of `api.grant_wide_keys` makes.
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    # A partner app's key covers exactly that app's end users' connections (and no brokerlink
    # user's); `users` does not apply to it.
    app = models.ForeignKey(
        "partners.PartnerApp", null=True, blank=True, on_delete=models.PROTECT, related_name="service_keys"
    )
    all_users = models.BooleanField(
        "every user's connections", default=False,
        help_text="Covers every person's connections. Only superusers (or staff with “grant wide keys”) may set it.",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(default=120)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("grant_wide_keys", "Can give service keys every user's connections, tokens:read or broker:call"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (blk_{self.prefix}_…)"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class ApiAuditEntry(models.Model):
    """One API request by a service key: who, which connection, what, when, and the result."""

    key = models.ForeignKey(ServiceKey, null=True, on_delete=models.SET_NULL, related_name="audit")
    key_name = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=16)  # list, status, check, refresh, token, proxy, denied
    connection_id = models.UUIDField(null=True, blank=True, db_index=True)
    method = models.CharField(max_length=8, blank=True)
    path = models.CharField(max_length=500, blank=True)
    status_code = models.PositiveSmallIntegerField()
    result = models.CharField(max_length=300, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "API audit entries"
        indexes = [models.Index(fields=["key", "-created_at"], name="api_audit_key_time_idx")]

    def __str__(self) -> str:
        return f"{self.key_name} {self.action} {self.status_code} ({self.created_at:%Y-%m-%d %H:%M:%S})"

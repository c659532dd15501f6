"""A user's brokerage connections and their event history."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from django.utils import timezone

from brokers.models import Environment
from vault.fields import SealedField

# The columns of the engine's row for this connection (`engine.models.EngineState`, reached
# through the reverse one-to-one `engine_state`) that a Connection reads and writes as its own
# attributes (the properties below), so callers need not know where they live. The engine app
# owns that row; this app never imports it, but a Connection needs it (save() creates it), so
# the engine is always installed with this app. The shortcuts are Python properties: they work
# on instances, not in queries (`filter`, `update`, `values`, `order_by` take
# `engine_state__next_check_at`). tests/engine/test_engine_state.py keeps this list equal to
# EngineState's columns.
ENGINE_FIELDS = (
    "next_check_at",
    "lease_until",
    "lease_owner",
    "last_check_at",
    "last_success_at",
    "consecutive_failures",
    "retry_attempt",
    "last_error_category",
    "last_error_message",
    "last_latency_ms",
    "health_score",
    "quality",
)


class ErrorCategory(models.TextChoices):
    NONE = "", "None"
    NETWORK = "network", "Network"
    BROKER_FAULT = "broker_fault", "Broker fault"
    RATE_LIMITED = "rate_limited", "Rate limited"
    AUTH = "auth", "Authorization"
    CONFIGURATION = "configuration", "Configuration"
    UNEXPECTED = "unexpected", "Unexpected response"


class ConnectionStatus(models.TextChoices):
    PENDING = "pending", "Connecting"
    CONNECTED = "connected", "Connected"
    CHECKING = "checking", "Checking"
    DEGRADED = "degraded", "Degraded"
    BROKER_OUTAGE = "broker_outage", "Broker outage"
    NEEDS_REAUTH = "needs_reauth", "Needs re-authentication"
    FAILED = "failed", "Failed"
    DISCONNECTED = "disconnected", "Disconnected"


class Connection(models.Model):
    # A UUID set in Python: sealed tokens bind to the primary key before the first save.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # PROTECT: deleting a person must not silently drop live grants and their history;
    # admin disconnects (revoking) and deactivates instead (pages.admin, on the user admin).
    # The owner: a brokerlink user, or an end user of a partner app (who has no brokerlink
    # account). Exactly one is set. Every read scoped by `user` never sees an end user's row.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="broker_connections"
    )
    end_user = models.ForeignKey(
        "partners.EndUser", null=True, blank=True, on_delete=models.PROTECT, related_name="connections"
    )
    broker_slug = models.SlugField(max_length=64)
    broker_app = models.ForeignKey("brokers.BrokerApp", null=True, blank=True, on_delete=models.SET_NULL)
    environment = models.CharField(max_length=8, choices=Environment.choices, default=Environment.PAPER)

    # The brokerage account's identity, as the broker reports it.
    account_id = models.CharField(max_length=255)
    account_number_masked = models.CharField(max_length=32, blank=True)
    account_label = models.CharField(max_length=255, blank=True)
    # The person's own name for the account ("Retirement"); titles lead with it.
    nickname = models.CharField(max_length=80, blank=True)

    status = models.CharField(max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.PENDING)
    status_changed_at = models.DateTimeField(default=timezone.now)

    # Tokens: sealed at rest (AES-256-GCM, bound to this row and field).
    access_token_sealed = models.TextField(blank=True, default="", editable=False)
    refresh_token_sealed = models.TextField(blank=True, default="", editable=False)
    access_token = SealedField("access_token_sealed")
    refresh_token = SealedField("refresh_token_sealed")
    token_type = models.CharField(max_length=32, blank=True, default="Bearer")
    scope = models.TextField(blank=True)
    access_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    # First consent of the current grant: absolute caps (Schwab's 7 days) count from here.
    grant_started_at = models.DateTimeField(null=True, blank=True)
    # Hard re-authentication deadline (absolute cap or daily wall-clock expiry), if any.
    reauth_deadline_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    # Non-secret values from the token response (Questrade's api_server, Schwab's account hash).
    token_meta = models.JSONField(default=dict, blank=True)

    # Engine bookkeeping (the next check, its lease, the last check's outcome, the health
    # score) lives in EngineState (engine.models), read and written through the properties below.
    # Single-flight refresh (engine.refresh): who is spending the refresh token and until when,
    # and when that request went out. A sent_at that outlives its claim means the outcome of
    # that request is unknown (the worker died, or the broker never answered).
    refresh_claim_owner = models.CharField(max_length=128, blank=True, default="")
    refresh_claim_until = models.DateTimeField(null=True, blank=True)
    refresh_sent_at = models.DateTimeField(null=True, blank=True)
    # When a request the broker answered was sent, if sent after refresh_sent_at: from then on
    # that unknown refresh has been processed or dropped (engine.rotation).
    refresh_later_answer_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    # A disconnected card the person put away: off the dashboard, still in the archive.
    archived_at = models.DateTimeField(null=True, blank=True)
    # Only after a revocation the broker did not confirm: the old tokens, sealed, kept for
    # "Try revoking again" and nothing else (the engine never reads them). Wiped once the
    # broker confirms, or when the connection is removed.
    revoke_pending_sealed = models.TextField(blank=True, default="", editable=False)
    revoke_pending = SealedField("revoke_pending_sealed")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "broker_slug", "environment", "account_id"], name="connection_unique_account"
            ),
            models.UniqueConstraint(
                fields=["end_user", "broker_slug", "environment", "account_id"],
                condition=models.Q(end_user__isnull=False),
                name="connection_unique_end_user_account",
            ),
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, end_user__isnull=True)
                | models.Q(user__isnull=True, end_user__isnull=False),
                name="connection_one_owner",
            ),
        ]
        permissions = [("disconnect_others", "Can disconnect and revoke other people's connections")]

    def __str__(self) -> str:
        return f"{self.broker_slug} {self.account_number_masked or self.account_id}"

    def save(self, *args, **kwargs):
        """Save the row; a new connection's EngineState (and, on a full save, a loaded one) too.
        Engine names in `update_fields` are saved on the EngineState row."""
        update_fields = kwargs.get("update_fields")
        engine_fields = None
        if update_fields is not None:
            engine_fields = [f for f in update_fields if f in ENGINE_FIELDS]
            kwargs["update_fields"] = [f for f in update_fields if f not in ENGINE_FIELDS]
        adding = self._state.adding
        if update_fields is None or kwargs["update_fields"]:
            super().save(*args, **kwargs)
        loaded = self._state.fields_cache.get("engine_state")
        if adding or (engine_fields is None and loaded is not None):
            state = self.engine_state_get()
            state.connection = self
            state.save(using=kwargs.get("using"), force_insert=state._state.adding)
        elif engine_fields:
            self.engine_state_get().save(update_fields=engine_fields, using=kwargs.get("using"))

    save.alters_data = True

    @property
    def has_tokens(self) -> bool:
        return bool(self.access_token_sealed)

    def engine_state_get(self):
        """This connection's EngineState (loaded once; `select_related("engine_state")` loads it
        with the row). An unsaved connection, or one whose row is missing, gets a fresh one,
        saved with the connection."""
        cached = self._state.fields_cache.get("engine_state")
        if cached is not None:
            return cached
        try:
            if not self._state.adding:
                return self.engine_state
            raise ObjectDoesNotExist
        except ObjectDoesNotExist:
            state = self._meta.get_field("engine_state").related_model(connection=self)
            self._state.fields_cache["engine_state"] = state
            return state


def _engine_property(name: str) -> property:
    def get(self):
        return getattr(self.engine_state_get(), name)

    def set(self, value):
        setattr(self.engine_state_get(), name, value)

    return property(get, set, doc=f"EngineState.{name} of this connection.")


def _engine_properties() -> None:
    for name in ENGINE_FIELDS:
        setattr(Connection, name, _engine_property(name))


class ConnectionEvent(models.Model):
    """An entry in a connection's history. Messages are sanitized: never a token or secret."""

    class Kind(models.TextChoices):
        CONNECTED = "connected", "Connected"
        RECONNECTED = "reconnected", "Reconnected"
        RECONNECT_REFUSED = "reconnect_refused", "Reconnect refused"
        STATUS_CHANGED = "status_changed", "Status changed"
        REFRESHED = "refreshed", "Token refreshed"
        REFRESH_FAILED = "refresh_failed", "Refresh failed"
        CHECK_FAILED = "check_failed", "Check failed"
        REVOKED = "revoked", "Revoked at broker"
        REVOCATION_FAILED = "revocation_failed", "Revocation not confirmed"
        DISCONNECTED = "disconnected", "Disconnected"
        ADMIN_ACTION = "admin_action", "Admin action"
        NOTIFIED = "notified", "Notification sent"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    from_status = models.CharField(max_length=16, choices=ConnectionStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=ConnectionStatus.choices, blank=True)
    category = models.CharField(max_length=16, choices=ErrorCategory.choices, blank=True, default="")
    message = models.CharField(max_length=500, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["connection", "-created_at"], name="event_connection_time_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.created_at:%Y-%m-%d %H:%M})"


class OAuthStateUse(models.Model):
    """A spent OAuth `state` (its SHA-256), so it is consumed exactly once across concurrent callbacks.

    The session alone cannot do it: parallel requests each load the session before any of
    them saves it. The unique insert is atomic on PostgreSQL and SQLite alike.
    """

    digest = models.CharField(max_length=64, unique=True)
    used_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"state {self.digest[:12]}… used {self.used_at:%Y-%m-%d %H:%M:%S}"


_engine_properties()

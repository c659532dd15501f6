"""Per-deployment broker credentials (BrokerApp) and operator-declared brokers (CustomBroker)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from vault.fields import SealedField


class Environment(models.TextChoices):
    PAPER = "paper", "Paper"
    LIVE = "live", "Live"


class BrokerApp(models.Model):
    """The OAuth client brokerlink uses with one broker in one environment.

    The client secret is sealed by the vault (AES-256-GCM, bound to this row and field):
    `app.client_secret` reads and writes the plaintext, the column holds ciphertext only.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    broker_slug = models.SlugField(max_length=64)
    environment = models.CharField(max_length=8, choices=Environment.choices, default=Environment.LIVE)
    client_id = models.CharField(max_length=255, blank=True)
    client_secret_sealed = models.TextField(blank=True, default="", editable=False)
    client_secret = SealedField("client_secret_sealed")
    redirect_uri = models.URLField(
        max_length=500, blank=True, help_text="Leave blank for {SITE_URL}/connections/callback/<broker>/."
    )
    enabled = models.BooleanField(default=True)
    # Set once, for the whole app, when the broker answers invalid_client: an admin must act.
    config_problem = models.TextField(blank=True, default="")
    config_problem_at = models.DateTimeField(null=True, blank=True)
    # Learned from refresh answers (engine.rotation): a new refresh token in any
    # answer marks the broker rotating for good; answers that kept the same one are counted.
    refresh_rotation_seen_at = models.DateTimeField(null=True, blank=True)
    refresh_kept_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["broker_slug", "environment"], name="brokerapp_unique_slug_environment")
        ]
        ordering = ["broker_slug", "environment"]
        verbose_name = "broker app"

    def __str__(self) -> str:
        return f"{self.broker_slug} ({self.environment})"

    @property
    def has_client_secret(self) -> bool:
        return bool(self.client_secret_sealed)

    def clean(self) -> None:
        super().clean()
        if self.redirect_uri:
            # Only brokerlink's own callback for this broker: anything else would send codes elsewhere.
            expected = f"{settings.SITE_URL.rstrip('/')}/connections/callback/{self.broker_slug}/"
            if self.redirect_uri.split("?", 1)[0] != expected:
                raise ValidationError({"redirect_uri": f"Must be {expected} (from SITE_URL), or blank."})

    @property
    def effective_redirect_uri(self) -> str:
        if self.redirect_uri:
            return self.redirect_uri
        try:
            path = reverse("connections:callback", kwargs={"slug": self.broker_slug})
        except NoReverseMatch:
            path = f"/connections/callback/{self.broker_slug}/"
        return f"{settings.SITE_URL.rstrip('/')}{path}"


class TokenAuthMethod(models.TextChoices):
    BASIC = "client_secret_basic", "HTTP Basic (client_secret_basic)"
    POST = "client_secret_post", "Form body (client_secret_post)"
    NONE = "none", "None (public client)"


class RevocationScope(models.TextChoices):
    TOKEN = "token", "Revokes the given token (RFC 7009)"
    GRANT = "grant", "Revokes the whole grant"
    ALL_USERS_OF_KEY = "all_users_of_key", "Revokes every user of the API key (never called)"
    NONE = "none", "No revocation endpoint"


class CustomBroker(models.Model):
    """A generic OAuth 2.0 broker declared in Django admin (no code).

    Missing endpoints are filled from `discovery_url` (RFC 8414 metadata) when the row is
    validated, so serving it never needs the network.
    """

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    discovery_url = models.URLField(
        max_length=500, blank=True, help_text="RFC 8414 metadata URL; fills in the endpoints left blank."
    )
    authorize_url = models.URLField(max_length=500, blank=True)
    token_url = models.URLField(max_length=500, blank=True)
    revoke_url = models.URLField(max_length=500, blank=True)
    revocation_scope = models.CharField(max_length=20, choices=RevocationScope.choices, default=RevocationScope.TOKEN)
    manual_revoke_url = models.URLField(max_length=500, blank=True)
    issuer = models.CharField(max_length=500, blank=True)
    api_base_url = models.URLField(
        max_length=500, blank=True, help_text="Base URL of account calls (live); blank = the discovered issuer."
    )
    paper_api_base_url = models.URLField(max_length=500, blank=True)
    heartbeat_path = models.CharField(max_length=200, default="/", help_text="GET path, relative to the API base.")
    scopes = models.CharField(max_length=500, blank=True, help_text="Space-separated.")
    scope_separator = models.CharField(max_length=3, default=" ", blank=True)
    token_auth_method = models.CharField(
        max_length=32, choices=TokenAuthMethod.choices, default=TokenAuthMethod.BASIC
    )
    pkce = models.BooleanField(default=True)
    issues_refresh_token = models.BooleanField(default=True)
    rotates_refresh_token = models.BooleanField(default=False)
    access_ttl = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds; blank = not stated.")
    refresh_ttl = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds; blank = does not expire.")
    absolute_cap = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds from first consent.")
    require_iss = models.BooleanField(
        null=True, blank=True, help_text="Callbacks must carry iss (RFC 9207). Blank = as the metadata advertises."
    )
    pkce_opt_out = models.CharField(
        max_length=500, blank=True,
        help_text="Leave blank: PKCE S256 is always sent. Only for a broker documented to reject it: the source.",
    )
    identity_id = models.CharField(
        max_length=200, blank=True, help_text="JSON pointer (/data/0/id) or dotted path (data.0.id) of the account id "
        "in the heartbeat answer. Blank = sub, id, account_id, account_number or a list of accounts.",
    )
    identity_label = models.CharField(max_length=200, blank=True, help_text="Path of the account's display name.")
    identity_number = models.CharField(max_length=200, blank=True, help_text="Path of the account number (masked).")
    heartbeat_interval_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Default 60.")
    refresh_margin_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Refresh this long before expiry. Blank = a third of the access lifetime, "
        "at most 300 s.",
    )
    refresh_deadline_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Default 180.")
    refresh_reuse_grace_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds a rotated-away refresh token is still accepted, if the broker documents it. Blank = none.",
    )
    backoff_kind = models.CharField(
        max_length=12, blank=True, choices=[("exponential", "exponential"), ("linear", "linear"), ("fixed", "fixed")]
    )
    backoff_base_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Default 30.")
    backoff_cap_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Default 1800.")
    backoff_max_attempts = models.PositiveIntegerField(null=True, blank=True, help_text="Default 8.")
    circuit_failure_threshold = models.PositiveIntegerField(
        null=True, blank=True, help_text="Failures in a row that open the broker's breaker. Default 5."
    )
    circuit_cooldown_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Default 60.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    def to_spec(self) -> dict:
        spec = {
            name: getattr(self, name)
            for name in (
                "name", "discovery_url", "authorize_url", "token_url", "revoke_url", "revocation_scope",
                "manual_revoke_url", "issuer", "heartbeat_path", "scope_separator", "token_auth_method", "pkce",
                "issues_refresh_token", "rotates_refresh_token", "access_ttl", "refresh_ttl", "absolute_cap",
                "require_iss", "pkce_opt_out", "heartbeat_interval_seconds", "refresh_margin_seconds",
                "refresh_deadline_seconds", "refresh_reuse_grace_seconds",
            )
        }
        spec["scopes"] = self.scopes.split()
        if self.api_base_url:
            spec["api_base_urls"] = {"live": self.api_base_url}
            if self.paper_api_base_url:
                spec["api_base_urls"]["paper"] = self.paper_api_base_url
        if self.identity_id:
            spec["identity"] = {"id": self.identity_id, "label": self.identity_label, "number": self.identity_number}
        spec["backoff"] = {
            key: getattr(self, f"backoff_{key}") for key in ("kind", "base_seconds", "cap_seconds", "max_attempts")
        }
        spec["circuit"] = {key: getattr(self, f"circuit_{key}") for key in ("failure_threshold", "cooldown_seconds")}
        for group in ("identity", "backoff", "circuit"):
            if group in spec:
                spec[group] = {k: v for k, v in spec[group].items() if v not in ("", None)}
        return {key: value for key, value in spec.items() if value not in ("", None, {})}


class DiscoveredMetadata(models.Model):
    """The last good metadata document fetched from a discovery URL (RFC 8414 / OIDC Discovery).

    Used while the URL is unreachable, so a discovery outage neither blocks a deploy nor
    breaks connections; refreshed by the `brokers.tasks.discovery_refresh` beat task.
    """

    url = models.URLField(max_length=500, unique=True)
    metadata = models.JSONField(default=dict)
    fetched_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "discovered metadata"
        verbose_name_plural = "discovered metadata"

    def __str__(self) -> str:
        return self.url


class BrokerRequest(models.Model):
    """A person asking for a broker this deployment cannot connect yet. Staff hear about a
    broker once (its first request); later requests only add to the count in admin."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="broker_requests")
    broker_slug = models.SlugField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    staff_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "broker_slug"], name="broker_request_once_per_user"),
            # At most one request per broker carries the staff notice: that is what makes it once.
            models.UniqueConstraint(
                fields=["broker_slug"],
                condition=models.Q(staff_notified_at__isnull=False),
                name="broker_request_staff_notified_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.broker_slug} requested by {self.user}"

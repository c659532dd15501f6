"""Per-deployment broker credentials (BrokerApp) and operator-declared brokers (CustomBroker)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.urls import NoReverseMatch, reverse

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
    api_base_url = models.URLField(max_length=500, help_text="Base URL of account calls (live).")
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
            )
        }
        spec["scopes"] = self.scopes.split()
        spec["api_base_urls"] = {"live": self.api_base_url}
        if self.paper_api_base_url:
            spec["api_base_urls"]["paper"] = self.paper_api_base_url
        return {key: value for key, value in spec.items() if value not in ("", None)}

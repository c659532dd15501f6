"""Apps that use brokerlink as their connection layer, their end users, and connect sessions.

An end user is a person of another app (the app's own id for them), never a brokerlink
account: they never sign in to brokerlink, and two apps' end users never meet.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone


class PartnerApp(models.Model):
    """Another app whose service keys create connect sessions for its own users."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Shown to end users: "<name> asks to link your brokerage account".
    name = models.CharField(max_length=100)
    logo_url = models.URLField(max_length=500, blank=True, help_text="https only; shown on the hosted pages.")
    brand_colour = models.CharField(
        max_length=7, blank=True, validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", "A colour as #rrggbb.")]
    )
    # Where a session may send the browser back to: exact matches only (no prefixes, no patterns).
    return_urls = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "partner app"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """The logo and the return URLs obey brokerlink's one URL policy (outbound.policy): https
        only (http to a loopback host only behind the development switch), no user-info, no
        private address literal; so never javascript:, data: or a scheme-relative URL. The host
        is not resolved: brokerlink itself never fetches them, the end user's browser does."""
        from outbound.policy import outbound_url_problem

        errors = {}
        if self.logo_url and (problem := outbound_url_problem(self.logo_url, resolve_host=False)):
            errors["logo_url"] = f"The logo URL {problem}."
        if not isinstance(self.return_urls, list) or not all(isinstance(u, str) for u in self.return_urls):
            errors["return_urls"] = "Return URLs are a list of URLs."
        else:
            bad = [u for u in self.return_urls if outbound_url_problem(u, resolve_host=False)]
            if bad:
                problem = outbound_url_problem(bad[0], resolve_host=False)
                errors["return_urls"] = f"Each return URL {problem} ({bad[0][:200]} does not)."
            elif any(len(u) > 1000 for u in self.return_urls):
                errors["return_urls"] = "A return URL must be at most 1000 characters."
        if errors:
            raise ValidationError(errors)


class EndUser(models.Model):
    """One person of one app, known by the app's own id for them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(PartnerApp, on_delete=models.PROTECT, related_name="end_users")
    external_id = models.CharField(max_length=255)
    email = models.EmailField(blank=True)
    display_name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["app", "external_id"]
        constraints = [models.UniqueConstraint(fields=["app", "external_id"], name="end_user_unique_per_app")]

    def __str__(self) -> str:
        return f"{self.app.name}: {self.external_id}"


class ConnectSession(models.Model):
    """A single-use, short-lived permission for one browser to connect (or reconnect) a broker
    account for one end user. Only the SHA-256 of its URL token is stored; after the first open
    the session lives in that browser's Django session, never in a URL again."""

    class Status(models.TextChoices):
        CREATED = "created", "Created (link not opened)"
        OPENED = "opened", "Opened in a browser"
        COMPLETED = "completed", "Completed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(PartnerApp, on_delete=models.CASCADE, related_name="connect_sessions")
    end_user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="connect_sessions")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    # SHA-256 of the secret kept in the browser's session that opened the link.
    browser_hash = models.CharField(max_length=64, blank=True, editable=False)
    # The service key that asked for it (no foreign key: the api app builds on this one).
    key_id = models.UUIDField(null=True, blank=True)
    brokers = models.JSONField(default=list, blank=True)  # empty: every broker brokerlink offers
    environment = models.CharField(max_length=8, blank=True)
    return_url = models.URLField(max_length=1000, blank=True)
    # A reconnect session repairs this connection in place.
    connection = models.ForeignKey(
        "connections.Connection", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CREATED)
    expires_at = models.DateTimeField()
    opened_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # What the session produced (the new or repaired connection).
    result_connection_id = models.UUIDField(null=True, blank=True)
    last_failure = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["end_user", "-created_at"], name="connect_session_user_idx")]

    def __str__(self) -> str:
        return f"{self.app.name} session for {self.end_user.external_id} ({self.status})"

    @property
    def is_reconnect(self) -> bool:
        return self.connection_id is not None

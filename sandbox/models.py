"""The sandbox broker's own data: OAuth clients with their token semantics and faults,
broker-side users and paper accounts, consents (grants), authorization codes and tokens.

Codes and tokens are stored as SHA-256 hashes; the plain values exist only in responses.
"""

from __future__ import annotations

import hashlib

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from django.db import models
from django.utils import timezone


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class TokenAuthMethod(models.TextChoices):
    BASIC = "client_secret_basic", "HTTP Basic (client_secret_basic)"
    POST = "client_secret_post", "Form body (client_secret_post)"
    NONE = "none", "Public client (none)"


class SandboxCounters(models.Model):
    """What tests read to see what a client did: kept per client and per grant."""

    codes_issued = models.PositiveIntegerField(default=0)
    token_requests = models.PositiveIntegerField(default=0)
    refreshes = models.PositiveIntegerField(default=0)
    rotated_reuses = models.PositiveIntegerField(default=0)
    revocations = models.PositiveIntegerField(default=0)
    account_calls = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True


def secret_hash(secret: str) -> str:
    """What the sandbox stores instead of a client secret (a random 32-byte value: no salt or
    slow hash needed, unlike a password)."""
    import hashlib

    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


class SandboxClient(ClientMixin, SandboxCounters):
    client_id = models.CharField(max_length=64, unique=True)
    # sha256$<hex> of the secret; the plaintext is shown once, when the client is created.
    client_secret = models.CharField(max_length=128, blank=True)
    name = models.CharField(max_length=120)
    # One exact URI per line.
    redirect_uris = models.TextField()
    token_endpoint_auth_method = models.CharField(
        max_length=32, choices=TokenAuthMethod.choices, default=TokenAuthMethod.BASIC
    )
    require_pkce = models.BooleanField(default=True)
    emulate = models.CharField(max_length=64, blank=True, help_text="Broker slug whose TokenRules this client copies.")
    # OpenID Connect mode: offline_access is granted only with prompt=consent (OIDC Core
    # 11); without it the refresh token dies with the login session. No `iss` on the callback
    # (the OIDC discovery document does not advertise RFC 9207), identity from userinfo.
    oidc = models.BooleanField(default=False)
    login_session_ttl = models.PositiveIntegerField(
        default=600, help_text="OIDC mode: seconds a grant without offline_access lives (the login session)."
    )

    # Token semantics (brokers.profile.TokenRules). Durations in seconds; null = never expires.
    access_ttl = models.PositiveIntegerField(null=True, blank=True, default=3600)
    issues_refresh_token = models.BooleanField(default=True)
    refresh_ttl = models.PositiveIntegerField(null=True, blank=True)
    rotates_refresh_token = models.BooleanField(default=False)
    # Strict by default: presenting a rotated-away refresh token revokes the whole grant. With a
    # grace, one presented within that many seconds of its rotation is answered like a live one.
    refresh_reuse_grace_seconds = models.PositiveIntegerField(null=True, blank=True)
    absolute_cap = models.PositiveIntegerField(null=True, blank=True)
    daily_expiry = models.TimeField(null=True, blank=True)
    daily_expiry_tz = models.CharField(max_length=64, default="UTC")
    invalid_refresh_status = models.PositiveSmallIntegerField(default=400)
    invalid_refresh_body = models.JSONField(default=dict, blank=True, help_text="Empty = RFC 6749 invalid_grant.")
    invalid_refresh_content_type = models.CharField(max_length=64, default="application/json")
    invalid_access_status = models.PositiveSmallIntegerField(default=401)
    invalid_access_body = models.JSONField(default=dict, blank=True, help_text="Empty = RFC 6750 invalid_token.")
    invalid_access_content_type = models.CharField(max_length=64, default="application/json")

    # Faults, changeable at run time.
    latency_ms = models.PositiveIntegerField(default=0)
    error_5xx_rate = models.FloatField(default=0.0)
    rate_limit = models.PositiveIntegerField(default=0, help_text="Retry-After seconds of a 429 answer; 0 = off.")
    outage = models.BooleanField(default=False)
    refresh_invalid_grant = models.BooleanField(default=False)
    html_errors = models.BooleanField(default=False)
    # 502 is a gateway error page; 200 is the nastier case of a login or maintenance page
    # served with a success status.
    html_status = models.PositiveSmallIntegerField(default=502)
    stall_seconds = models.FloatField(default=0.0)
    # Shifts the sandbox's notion of "now" for this client, so tests can jump days ahead.
    clock_offset_seconds = models.IntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The control API and page change how a broker behaves for everyone using it: not for every staff member.
        permissions = [("control_sandbox", "Can use the sandbox broker's control page and API")]

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    def now(self):
        return timezone.now() + timezone.timedelta(seconds=self.clock_offset_seconds)

    @property
    def redirect_uri_list(self) -> list[str]:
        return [line.strip() for line in self.redirect_uris.splitlines() if line.strip()]

    # authlib ClientMixin
    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        uris = self.redirect_uri_list
        return uris[0] if uris else None

    def get_allowed_scope(self, scope):
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uri_list

    def check_client_secret(self, client_secret):
        import hmac

        return bool(self.client_secret) and hmac.compare_digest(self.client_secret, secret_hash(client_secret or ""))

    def check_endpoint_auth_method(self, method, endpoint):
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        if grant_type == "refresh_token":
            return self.issues_refresh_token
        return grant_type == "authorization_code"


class SandboxUser(models.Model):
    """A login at the sandbox broker. Not a brokerlink user: the sandbox keeps its own."""

    username = models.CharField(max_length=64, unique=True)
    password = models.CharField(max_length=128)
    display_name = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.username


class SandboxAccount(models.Model):
    user = models.ForeignKey(SandboxUser, on_delete=models.CASCADE, related_name="accounts")
    kind = models.CharField(max_length=40, default="Individual")
    account_number = models.CharField(max_length=32, unique=True)
    status = models.CharField(max_length=16, default="ACTIVE")
    paper = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.label

    @property
    def masked_number(self) -> str:
        return f"••{self.account_number[-4:]}"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.masked_number}"


class SandboxGrant(SandboxCounters):
    """One consent: a user let a client reach one account. The absolute cap counts from here."""

    client = models.ForeignKey(SandboxClient, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(SandboxUser, on_delete=models.CASCADE, related_name="grants")
    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="grants")
    scope = models.CharField(max_length=255, blank=True)
    consented_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=64, blank=True)
    # OIDC mode without offline_access: refresh stops working when the login session ends.
    session_expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"grant {self.pk} {self.user} → {self.client.name}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def cap_reached(self, now) -> bool:
        cap = self.client.absolute_cap
        return cap is not None and now >= self.consented_at + timezone.timedelta(seconds=cap)


class SandboxAuthorizationCode(AuthorizationCodeMixin, models.Model):
    code_hash = models.CharField(max_length=64, unique=True)
    client = models.ForeignKey(SandboxClient, on_delete=models.CASCADE)
    grant = models.ForeignKey(SandboxGrant, on_delete=models.CASCADE, related_name="codes")
    redirect_uri = models.TextField()
    scope = models.CharField(max_length=255, blank=True)
    code_challenge = models.CharField(max_length=128, blank=True)
    code_challenge_method = models.CharField(max_length=10, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"code {self.pk} for grant {self.grant_id}"

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


class SandboxToken(TokenMixin, models.Model):
    """One token issuance: an access token and, when issued, a refresh token."""

    client = models.ForeignKey(SandboxClient, on_delete=models.CASCADE, related_name="tokens")
    grant = models.ForeignKey(SandboxGrant, on_delete=models.CASCADE, related_name="tokens")
    access_token_hash = models.CharField(max_length=64, unique=True)
    refresh_token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    scope = models.CharField(max_length=255, blank=True)
    issued_at = models.DateTimeField()
    access_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    access_revoked = models.BooleanField(default=False)
    refresh_revoked = models.BooleanField(default=False)
    # The refresh token was spent on a rotation; presenting it again is reuse.
    rotated = models.BooleanField(default=False)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"token {self.pk} for grant {self.grant_id}"

    # authlib TokenMixin
    def check_client(self, client):
        return self.client_id == client.pk

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        if self.access_expires_at is None:
            return 0
        return int((self.access_expires_at - self.issued_at).total_seconds())

    def is_expired(self):
        return self.access_expires_at is not None and self.client.now() >= self.access_expires_at

    def is_revoked(self):
        return self.access_revoked or self.grant.is_revoked

    def get_user(self):
        return self.grant.user

    def get_client(self):
        return self.client

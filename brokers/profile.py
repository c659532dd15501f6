"""What brokerlink knows about one broker, declared as data.

A profile is a frozen dataclass: endpoints, scopes, PKCE, client authentication, token
lifetimes, refresh rotation, heartbeat, rate limits, error shapes, and the source link for
each value. Quirks live in `BrokerHooks` subclasses, never in `if broker == ...` branches.
The sandbox broker emulates a profile's `TokenRules`, which is how every profile is
exercised end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import time
from typing import Any, Literal

from brokers.identity import IdentitySpec, identity_from_payload, mask_account_number  # noqa: F401 - re-exported

TokenAuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]
RevocationScope = Literal["token", "grant", "all_users_of_key", "none"]
BackoffKind = Literal["exponential", "linear", "fixed"]
REFRESH_MARGIN_CAP_SECONDS = 300


class TokenAnswerRejected(ValueError):
    """A hook refuses a value in a token answer (Questrade's api_server on another host).
    The message is for people and names no secret; connections turns it into BrokerError."""


@dataclass(frozen=True)
class ErrorShape:
    """How a broker answers one kind of failure: status, content type and body."""

    status: int
    body: Any = None
    content_type: str = "application/json"


STANDARD_INVALID_GRANT = ErrorShape(400, {"error": "invalid_grant", "error_description": "refresh token is invalid"})
STANDARD_INVALID_TOKEN = ErrorShape(401, {"error": "invalid_token", "error_description": "access token is invalid"})


@dataclass(frozen=True)
class TokenRules:
    """Token semantics of a broker: what the sandbox emulates and the engine plans for.

    Durations are seconds; None means "does not expire" (or "not documented").
    """

    access_ttl: int | None = 3600
    issues_refresh_token: bool = True
    refresh_ttl: int | None = None
    rotates_refresh_token: bool = False
    # Counted from the first consent; refreshing never extends it (Schwab: 7 days).
    absolute_cap: int | None = None
    # Wall-clock expiry of the access token, e.g. 03:30 Asia/Kolkata for Upstox.
    daily_expiry: time | None = None
    daily_expiry_tz: str = "UTC"
    token_auth_method: TokenAuthMethod = "client_secret_basic"  # noqa: S105 - a method name
    pkce: bool = True
    # What the token endpoint answers for a dead refresh token.
    invalid_refresh: ErrorShape = STANDARD_INVALID_GRANT
    # What an API call answers for an expired or revoked access token.
    invalid_access: ErrorShape = STANDARD_INVALID_TOKEN


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: int
    source: str = ""


@dataclass(frozen=True)
class BackoffPolicy:
    kind: BackoffKind = "exponential"
    base_seconds: int = 30
    cap_seconds: int = 1800
    max_attempts: int = 8


@dataclass(frozen=True)
class CircuitPolicy:
    failure_threshold: int = 5
    cooldown_seconds: int = 60


class BrokerHooks:
    """Overridable quirks. The defaults describe a plain RFC 6749 broker."""

    def api_base_url(self, profile: BrokerProfile, *, environment: str, token_meta: dict) -> str:
        """Base URL for account calls. Questrade overrides it with the per-token api_server."""
        return profile.api_base_urls.get(environment) or profile.api_base_urls.get("live", "")

    def token_meta(self, token_response: dict) -> dict:
        """Non-secret values from a token response worth keeping beside the tokens."""
        return {}

    def parse_account(self, payload: Any) -> dict:
        """Turn the heartbeat/identity payload into {account_id, masked_number, label, paper}.

        The usual shapes (sub, id, account_id, account_number, a list of accounts) are read by
        brokers.identity; an answer with none of them raises IdentityError saying so.
        """
        return identity_from_payload(payload)


@dataclass(frozen=True)
class BrokerProfile:
    slug: str
    name: str
    authorize_url: str
    token_url: str
    # Account API base per environment ("live", "paper"); the heartbeat path is relative to it.
    api_base_urls: dict[str, str]
    heartbeat_path: str
    token_rules: TokenRules
    scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    revoke_url: str = ""
    revocation_scope: RevocationScope = "token"
    # Where a user revokes access by hand when brokerlink cannot (or must not) do it.
    manual_revoke_url: str = ""
    issuer: str = ""  # RFC 9207: the `iss` value a callback must carry when it carries one
    # Whether every callback must carry `iss`: the metadata advertises
    # authorization_response_iss_parameter_supported, or the operator declared it (RFC 9207 §2.4).
    # Otherwise a callback without `iss` passes and one with it must match (or share the origin).
    require_iss: bool = False
    # PKCE S256 is sent on every authorization (RFC 9700 §2.1.1); brokers ignore unknown
    # parameters. Non-empty only for a broker documented to reject it: the source saying so.
    pkce_opt_out: str = ""
    extra_authorize_params: dict[str, str] = field(default_factory=dict)
    heartbeat_interval_seconds: int = 60
    # How long before the access token expires it is refreshed. None: a third of the access
    # lifetime, capped at REFRESH_MARGIN_CAP_SECONDS (see refresh_margin()).
    refresh_margin_seconds: int | None = None
    # How long a refresh of a rotating refresh token waits for its answer (None: the engine's
    # REFRESH_DEADLINE_SECONDS). See engine.refresh.
    refresh_deadline_seconds: int | None = None
    # How long the broker still accepts a refresh token it has just rotated away (a reuse grace
    # period), when it documents one; None: none, reuse of a spent token may revoke the grant.
    refresh_reuse_grace_seconds: int | None = None
    # Statuses on an account call that mean "this access token is no longer valid".
    token_invalid_statuses: tuple[int, ...] = (401,)
    rate_limit: RateLimit | None = None
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    circuit: CircuitPolicy = field(default_factory=CircuitPolicy)
    # Typical heartbeat latency; the health score compares a connection against it.
    baseline_latency_ms: int = 250
    mark: str = ""  # two or three letters shown in the broker's badge
    website: str = ""
    # What users read in the catalog: what the broker is, in plain words. `notes` are for operators.
    description: str = ""
    notes: str = ""
    # field name -> source link (../shared/brokers.md gives each value's source).
    sources: dict[str, str] = field(default_factory=dict)
    hooks: BrokerHooks = field(default_factory=BrokerHooks)
    # Where the account id is in the heartbeat answer, when the usual shapes do not fit.
    identity: IdentitySpec | None = None
    is_sandbox: bool = False
    is_custom: bool = False
    # Added by the registry (defaults keep older callers working):
    # per-environment replacements for URL fields, e.g. {"paper": {"authorize_url": ...}};
    # `for_environment()` applies them.
    environment_urls: dict[str, dict[str, str]] = field(default_factory=dict)
    # RFC 8414 authorization-server metadata URL, where the broker publishes one.
    metadata_url: str = ""
    # True on a real profile re-pointed at the sandbox broker (contract suite).
    sandbox_emulation: bool = False

    def parse_identity(self, payload: Any) -> dict:
        """{account_id, masked_number, label, paper}: the declared identity paths, else the hook."""
        if self.identity is not None:
            return identity_from_payload(payload, self.identity)
        return self.hooks.parse_account(payload)

    def refresh_margin(self, access_lifetime_seconds: float | None) -> float:
        """Seconds before expiry to refresh: the declared margin, else a third of the access
        lifetime capped at REFRESH_MARGIN_CAP_SECONDS (60 s tokens refresh 20 s ahead, not every check)."""
        if self.refresh_margin_seconds is not None:
            return float(self.refresh_margin_seconds)
        lifetime = access_lifetime_seconds or self.token_rules.access_ttl
        if not lifetime or lifetime <= 0:
            return float(REFRESH_MARGIN_CAP_SECONDS)
        return min(float(REFRESH_MARGIN_CAP_SECONDS), lifetime / 3)

    @property
    def environments(self) -> tuple[str, ...]:
        """Environments the broker offers ("live", "paper"), in that order."""
        return tuple(env for env in ("live", "paper") if env in self.api_base_urls)

    @property
    def can_revoke_single_user(self) -> bool:
        """Whether brokerlink may call the revoke endpoint for one user's disconnect.

        False when there is no endpoint, and False for TradeStation-like endpoints that
        revoke every user of the API key ("all_users_of_key"): calling those would
        disconnect everyone.
        """
        return bool(self.revoke_url) and self.revocation_scope in ("token", "grant")

    def for_environment(self, environment: str) -> BrokerProfile:
        """This profile with the URL overrides of `environment` applied (paper hosts)."""
        overrides = self.environment_urls.get(environment)
        if not overrides:
            return self
        return replace(self, **overrides)

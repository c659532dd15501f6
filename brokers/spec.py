"""What an operator may write for a custom broker (YAML file or admin), declared as pydantic models.

`spec_check(slug, spec)` returns the spec as declared (shorthands expanded: `api_base_url`,
a space-separated `scopes`, `identity: /path`) and every problem as (field, message);
`BrokerSpecError` carries them to the system check and the admin form:

    BROKERS_FILE brokers.yaml: broker "acme": token_url: must be an https:// URL ...
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from brokers.identity import path_problem
from brokers.profile import BackoffKind, RevocationScope, TokenAuthMethod
from brokers.profiles import RESERVED_SLUGS
from brokers.validation import EndpointUrl, one_of, problem, problems_of, says

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Beat fires the sweep every 60 s: a shorter interval could not be honoured.
MIN_HEARTBEAT_SECONDS = 60

PositiveWhole = Annotated[int, Field(strict=True, gt=0), says("must be a positive whole number")]
Seconds = Annotated[
    Annotated[int, Field(strict=True, gt=0)] | None, says("must be a positive whole number of seconds (or omitted)")
]
Flag = Annotated[StrictBool, says("must be true or false")]
Text = Annotated[StrictStr | None, says("must be text")]


def _at_least_min_heartbeat(value: int | None) -> int | None:
    if value is not None and value < MIN_HEARTBEAT_SECONDS:
        raise problem(f"must be at least {MIN_HEARTBEAT_SECONDS}")
    return value


def _hh_mm(value: Any) -> Any:
    if value is not None:
        try:
            hours, minutes = str(value).split(":")
            time(int(hours), int(minutes))
        except ValueError:
            raise problem("must be HH:MM") from None
    return value


def _split_scopes(value: Any) -> Any:
    return value.split() if isinstance(value, str) else value


def _identity_path(value: Any) -> Any:
    if value is not None and (found := path_problem(value)):
        raise problem(found)
    return value


def _identity_id(value: Any) -> Any:
    if value is None:
        raise problem("is required: the path of the account id in the heartbeat answer")
    return _identity_path(value)


def _live_paper(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise problem("must be a mapping of live and/or paper to URLs")
    if set(value) - {"live", "paper"}:
        raise problem("keys must be 'live' and/or 'paper'")
    return value


def _mapping_of(model: type[BaseModel]):
    """A nested group must be a mapping of its fields (blank entries mean "the default")."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise problem(f"must be a mapping with {', '.join(model.model_fields)}")
        return {key: item for key, item in value.items() if item not in (None, "")}

    return BeforeValidator(check)


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackoffSpec(Group):
    """brokers.profile.BackoffPolicy"""

    kind: Annotated[BackoffKind, says(one_of(BackoffKind))] = "exponential"
    base_seconds: PositiveWhole = 30
    cap_seconds: PositiveWhole = 1800
    max_attempts: PositiveWhole = 8

    @field_validator("cap_seconds")
    @classmethod
    def _not_below_base(cls, cap: int, info: ValidationInfo) -> int:
        base = info.data.get("base_seconds")
        if base is not None and cap < base:
            raise problem("must not be below backoff.base_seconds")
        return cap


class CircuitSpec(Group):
    """brokers.profile.CircuitPolicy"""

    failure_threshold: PositiveWhole = 5
    cooldown_seconds: PositiveWhole = 60


IdentityPath = Annotated[Any, AfterValidator(_identity_path)]


class IdentityDecl(Group):
    """brokers.identity.IdentitySpec: where the account id is in the heartbeat answer."""

    id: Annotated[Any, AfterValidator(_identity_id)] = Field(default=None, validate_default=True)
    label: IdentityPath = None
    number: IdentityPath = None


class RateLimitSpec(Group):
    requests: PositiveWhole
    per_seconds: PositiveWhole


def _identity_shorthand(value: Any) -> Any:
    return {"id": value} if isinstance(value, str) else value


class BrokerSpec(BaseModel):
    """One custom broker as the operator declares it (docs/brokers.md, docs/brokers.example.yaml)."""

    model_config = ConfigDict(extra="forbid")

    name: Text = None
    discovery_url: EndpointUrl = None
    authorize_url: EndpointUrl = None
    token_url: EndpointUrl = None
    revoke_url: EndpointUrl = None
    manual_revoke_url: EndpointUrl = None
    website: Annotated[str | None, says("must be a string URL")] = None
    issuer: Text = None
    # `api_base_url: URL` is short for `api_base_urls: {live: URL}`.
    api_base_url: EndpointUrl = None
    api_base_urls: Annotated[dict[str, EndpointUrl] | None, BeforeValidator(_live_paper)] = None
    heartbeat_path: Text = None
    scopes: Annotated[
        list[StrictStr], says("must be a list of strings or a space-separated string"), BeforeValidator(_split_scopes)
    ] = []
    scope_separator: Text = None
    token_auth_method: Annotated[TokenAuthMethod, says(one_of(TokenAuthMethod))] = "client_secret_basic"  # noqa: S105
    revocation_scope: Annotated[RevocationScope, says(one_of(RevocationScope))] = "token"
    pkce: Flag = True
    pkce_opt_out: Text = None
    issues_refresh_token: Flag = True
    rotates_refresh_token: Flag = False
    require_iss: Flag = False
    access_ttl: Seconds = None
    refresh_ttl: Seconds = None
    absolute_cap: Seconds = None
    daily_expiry: Annotated[Any, AfterValidator(_hh_mm)] = None
    daily_expiry_tz: Text = None
    heartbeat_interval_seconds: Annotated[Seconds, AfterValidator(_at_least_min_heartbeat)] = None
    refresh_margin_seconds: Seconds = None
    refresh_deadline_seconds: Seconds = None
    refresh_reuse_grace_seconds: Seconds = None
    extra_authorize_params: Annotated[dict[str, str], says("must be a mapping of parameter names to text")] = {}
    token_invalid_statuses: Annotated[
        list[Annotated[int, Field(strict=True, ge=400, le=599)]], says("must be a list of HTTP error statuses")
    ] = [401]
    rate_limit: Annotated[RateLimitSpec | None, _mapping_of(RateLimitSpec)] = None
    backoff: Annotated[BackoffSpec | None, _mapping_of(BackoffSpec)] = None
    circuit: Annotated[CircuitSpec | None, _mapping_of(CircuitSpec)] = None
    identity: Annotated[IdentityDecl | None, _mapping_of(IdentityDecl), BeforeValidator(_identity_shorthand)] = None
    mark: Text = None
    notes: Text = None

    @model_validator(mode="after")
    def _api_base_or_discovery(self) -> BrokerSpec:
        if self.api_base_urls is None and self.api_base_url:
            self.api_base_urls = {"live": self.api_base_url}
        if self.api_base_urls is None and not self.discovery_url:
            raise problem("is required (the base URL of account calls) unless discovery_url gives it",
                          field="api_base_url")
        return self


def slug_problems(slug: Any) -> list[tuple[str, str]]:
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        return [("slug", "must be lowercase letters, digits, '-' or '_' (max 64)")]
    if slug in RESERVED_SLUGS:
        return [("slug", "is a built-in broker; choose another slug")]
    return []


def spec_check(slug: Any, spec: Any) -> tuple[dict, list[tuple[str, str]]]:
    """(the spec with shorthands expanded, holding only the fields given; problems as (field, message))."""
    checked, problems = problems_of(BrokerSpec, spec)
    problems = slug_problems(slug) + problems
    if checked is None:
        return {}, problems
    return checked.model_dump(exclude_unset=True, exclude={"api_base_url"}), problems


# Spec keys that live under another name on the CustomBroker model (admin form errors).
GROUPS = {"backoff": BackoffSpec, "circuit": CircuitSpec, "identity": IdentityDecl}
MODEL_FIELD_FOR = {
    "api_base_urls.live": "api_base_url", "api_base_urls.paper": "paper_api_base_url", "api_base_url": "api_base_url",
    "api_base_urls": "api_base_url", "identity": "identity_id",
    **{f"{group}.{key}": f"{group}_{key}" for group, model in GROUPS.items() for key in model.model_fields},
}
MODEL_FIELDS = frozenset(
    {"slug", "name", "discovery_url", "authorize_url", "token_url", "revoke_url", "revocation_scope",
     "manual_revoke_url", "issuer", "heartbeat_path", "scopes", "scope_separator", "token_auth_method", "pkce",
     "issues_refresh_token", "rotates_refresh_token", "access_ttl", "refresh_ttl", "absolute_cap", "require_iss",
     "pkce_opt_out", "heartbeat_interval_seconds", "refresh_margin_seconds", "refresh_deadline_seconds",
     "refresh_reuse_grace_seconds"}
    | {f"{group}_{key}" for group, model in GROUPS.items() for key in model.model_fields}
)


class BrokerSpecError(ValueError):
    """One broker's spec is invalid; `problems` is a list of (field, message).

    `discovery_failed` marks the one problem that is not the operator's to fix: the discovery
    URL did not answer and no earlier answer is stored. It is a warning, not an error.
    """

    def __init__(self, slug: str, problems: list[tuple[str, str]], *, origin: str = "", discovery_failed: bool = False):
        self.slug = slug
        self.problems = problems
        self.origin = origin
        self.discovery_failed = discovery_failed
        super().__init__("; ".join(self.messages()))

    def messages(self) -> list[str]:
        prefix = f"{self.origin}: " if self.origin else ""
        return [f'{prefix}broker "{self.slug}": {field}: {message}' for field, message in self.problems]

    def field_errors(self) -> dict[str, list[str]]:
        """Errors keyed by CustomBroker field, for ValidationError in admin."""
        errors: dict[str, list[str]] = {}
        for field, message in self.problems:
            key = MODEL_FIELD_FOR.get(field, field if field in MODEL_FIELDS else "__all__")
            errors.setdefault(key, []).append(message if key == field else f"{field}: {message}")
        return errors

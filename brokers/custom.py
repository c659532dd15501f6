"""Custom brokers declared without code: a YAML file (settings.BROKERS_FILE) and Django admin.

A spec is a plain dict of generic OAuth 2.0 values. `resolve_spec()` checks it, fetches
RFC 8414 metadata from `discovery_url` to fill in missing endpoints, and raises
`BrokerSpecError` whose messages name the field:

    BROKERS_FILE brokers.yaml: broker "acme": token_url: must be an https:// URL
    (http allowed only for 127.0.0.1/localhost)

See docs/brokers.example.yaml for the file format.
"""

from __future__ import annotations

import logging
import os
import re
import time as monotonic_clock
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml
from django.conf import settings
from django.core.exceptions import SynchronousOnlyOperation, ValidationError
from django.db import DatabaseError

from brokers.identity import IdentitySpec
from brokers.profile import BackoffPolicy, BrokerProfile, CircuitPolicy, RateLimit, TokenRules
from brokers.profiles import RESERVED_SLUGS
from brokers.validation import url_problem, validate_profile
from outbound.clients import outbound_session, refused_by_policy
from outbound.policy import OutboundRefused, outbound_url_problem

log = logging.getLogger(__name__)

DISCOVERY_TIMEOUT_SECONDS = 5
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
URL_KEYS = ("discovery_url", "authorize_url", "token_url", "revoke_url", "manual_revoke_url", "website")
BOOL_KEYS = ("pkce", "issues_refresh_token", "rotates_refresh_token", "require_iss")
SECONDS_KEYS = (
    "access_ttl", "refresh_ttl", "absolute_cap", "heartbeat_interval_seconds", "refresh_margin_seconds",
    "refresh_deadline_seconds", "refresh_reuse_grace_seconds",
)
STR_KEYS = ("name", "issuer", "heartbeat_path", "scope_separator", "mark", "notes", "daily_expiry_tz", "pkce_opt_out")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
REVOCATION_SCOPES = ("token", "grant", "all_users_of_key", "none")
BACKOFF_KINDS = ("exponential", "linear", "fixed")
# Nested tuning groups: allowed keys and their defaults (brokers.profile.BackoffPolicy / CircuitPolicy).
GROUP_KEYS = {
    "backoff": ("kind", "base_seconds", "cap_seconds", "max_attempts"),
    "circuit": ("failure_threshold", "cooldown_seconds"),
    "identity": ("id", "label", "number"),
}
KNOWN_KEYS = frozenset(
    {*URL_KEYS, *BOOL_KEYS, *SECONDS_KEYS, *STR_KEYS, *GROUP_KEYS}
    | {"api_base_url", "api_base_urls", "scopes", "token_auth_method", "revocation_scope", "daily_expiry",
       "extra_authorize_params", "token_invalid_statuses", "rate_limit"}
)
# Seconds a failed discovery is remembered before the next lookup tries again.
DISCOVERY_RETRY_SECONDS = 60
# Beat fires the sweep every 60 s: a shorter interval could not be honoured.
MIN_HEARTBEAT_SECONDS = 60
# Spec keys that live under another name on the CustomBroker model (admin form errors).
MODEL_FIELD_FOR = {"api_base_urls.live": "api_base_url", "api_base_urls.paper": "paper_api_base_url",
                   "api_base_url": "api_base_url", "api_base_urls": "api_base_url",
                   **{f"{group}.{key}": f"{group}_{key}" for group, keys in GROUP_KEYS.items() for key in keys},
                   "identity": "identity_id"}
MODEL_FIELDS = frozenset(
    {"slug", "name", "discovery_url", "authorize_url", "token_url", "revoke_url", "revocation_scope",
     "manual_revoke_url", "issuer", "heartbeat_path", "scopes", "scope_separator", "token_auth_method", "pkce",
     "issues_refresh_token", "rotates_refresh_token", "access_ttl", "refresh_ttl", "absolute_cap", "require_iss",
     "pkce_opt_out", "heartbeat_interval_seconds", "refresh_margin_seconds", "refresh_deadline_seconds",
     "refresh_reuse_grace_seconds"}
    | {f"{group}_{key}" for group, keys in GROUP_KEYS.items() for key in keys}
)


# CustomBroker fields discovery may fill in.
RESOLVED_FIELDS = ("authorize_url", "token_url", "revoke_url", "issuer")
# What custom_broker_resolve may fill on the row: the endpoints, the API base and require_iss.
RESOLVED_FORM_FIELDS = (*RESOLVED_FIELDS, "api_base_url", "require_iss")


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


class DiscoveryError(Exception):
    pass


@dataclass(frozen=True)
class FileResult:
    profiles: list[BrokerProfile]
    errors: list[str]
    # Discovery outages: the broker is served from stored metadata, or left out until it answers.
    warnings: list[str] = dataclass_field(default_factory=list)
    # time.monotonic() after which the file is read again (a discovery outage is retried).
    retry_at: float | None = None


# --- discovery (RFC 8414) ------------------------------------------------------------------

# One message for every way a fetch can fail: distinct ones (refused, timed out, HTTP 404,
# not JSON) would turn the admin form into a port scanner. The reason goes to the log.
DISCOVERY_FAILED = "could not fetch RFC 8414 metadata from this URL"


def _discovery_failed(url: str, reason: str) -> DiscoveryError:
    log.warning("brokers.custom.discovery_failed", extra={"reason": reason})
    return DiscoveryError(DISCOVERY_FAILED)


def fetch_authorization_server_metadata(url: str) -> dict:
    """GET an RFC 8414 metadata document, checking that it is JSON and names its issuer.

    Through the outbound-URL policy (checked address pinned) and never following a redirect.
    """
    try:
        response = outbound_session().get(
            url, timeout=DISCOVERY_TIMEOUT_SECONDS, headers={"Accept": "application/json"}, allow_redirects=False
        )
    except (requests.RequestException, OutboundRefused) as exc:
        reason = "refused by the outbound-URL policy" if refused_by_policy(exc) else type(exc).__name__
        raise _discovery_failed(url, reason) from exc
    if response.status_code != 200:
        raise _discovery_failed(url, f"HTTP {response.status_code}")
    try:
        metadata = response.json()
    except ValueError as exc:
        raise _discovery_failed(url, "not JSON") from exc
    if not isinstance(metadata, dict):
        raise _discovery_failed(url, "not a JSON object")
    issuer = metadata.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise _discovery_failed(url, "no issuer")
    # RFC 8414 section 3.3: the issuer must be the authority the metadata was fetched from.
    if _origin(issuer) != _origin(url):
        raise DiscoveryError(f"metadata issuer {issuer!r} does not match the discovery URL's host")
    return metadata


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def metadata_stored(url: str) -> dict | None:
    """The last good metadata fetched from `url`, or None (none yet, or no database yet)."""
    from brokers.models import DiscoveredMetadata

    try:
        row = DiscoveredMetadata.objects.filter(url=url).first()
    except (DatabaseError, SynchronousOnlyOperation):  # not migrated yet, or called from async code
        return None
    return dict(row.metadata) if row is not None else None


def metadata_store(url: str, metadata: dict | None, *, error: str = "") -> None:
    """Remember a good answer (or record a failed attempt). Never fails the caller."""
    from django.utils import timezone

    from brokers.models import DiscoveredMetadata

    now = timezone.now()
    try:
        if metadata is not None:
            DiscoveredMetadata.objects.update_or_create(
                url=url, defaults={"metadata": metadata, "fetched_at": now, "last_attempt_at": now, "last_error": ""}
            )
        else:
            DiscoveredMetadata.objects.filter(url=url).update(last_attempt_at=now, last_error=error[:300])
    except (DatabaseError, SynchronousOnlyOperation):
        log.info("brokers.discovery.not_stored", extra={"url": url})


def discovery_metadata(url: str) -> tuple[dict, str]:
    """(metadata, warning): a fresh fetch (stored for later), else the stored last good answer
    with a warning saying so. Raises DiscoveryError when neither exists."""
    try:
        metadata = fetch_authorization_server_metadata(url)
    except DiscoveryError as exc:
        stored = metadata_stored(url)
        metadata_store(url, None, error=str(exc))
        if stored is None:
            log.warning("brokers.discovery.failed", extra={"url": url, "error": str(exc)})
            raise
        log.warning("brokers.discovery.stale", extra={"url": url, "error": str(exc)})
        return stored, f"{exc}; using the metadata stored from the last successful fetch"
    metadata_store(url, metadata)
    return metadata, ""


def apply_metadata(spec: dict, metadata: dict) -> dict:
    """Fill the endpoints (and PKCE/auth method, `iss` requirement and API base when unspecified)
    the spec left out."""
    filled = dict(spec)
    for key, meta_key in (
        ("authorize_url", "authorization_endpoint"),
        ("token_url", "token_endpoint"),
        ("revoke_url", "revocation_endpoint"),
        ("issuer", "issuer"),
    ):
        if not filled.get(key) and metadata.get(meta_key):
            filled[key] = metadata[meta_key]
    if "pkce" not in spec and "code_challenge_methods_supported" in metadata:
        filled["pkce"] = "S256" in (metadata.get("code_challenge_methods_supported") or [])
    supported = metadata.get("token_endpoint_auth_methods_supported")
    if "token_auth_method" not in spec and supported:
        filled["token_auth_method"] = next((m for m in AUTH_METHODS if m in supported), "client_secret_basic")
    # RFC 9207 §3: `iss` is mandatory on callbacks only where the metadata says it is sent.
    # An issuer the operator wrote in the spec (not copied from metadata) counts as declared.
    if "require_iss" not in spec:
        filled["require_iss"] = bool(spec.get("issuer")) or metadata.get(
            "authorization_response_iss_parameter_supported"
        ) is True
    # An OpenID provider's userinfo endpoint lives under its issuer: the API base defaults to it.
    if not filled.get("api_base_urls") and isinstance(metadata.get("issuer"), str):
        filled["api_base_urls"] = {"live": metadata["issuer"].rstrip("/")}
    return filled


# --- validation ----------------------------------------------------------------------------

def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _tuning_problems(spec: dict) -> list[tuple[str, str]]:
    """Problems in the nested groups: backoff, circuit (breaker) and identity."""
    from brokers.identity import path_problem

    problems: list[tuple[str, str]] = []
    for group, keys in GROUP_KEYS.items():
        value = spec.get(group)
        if value is None:
            continue
        if group == "identity" and isinstance(value, str):
            spec["identity"] = value = {"id": value}
        if not isinstance(value, dict):
            problems.append((group, f"must be a mapping with {', '.join(keys)}"))
            continue
        for key in value:
            if key not in keys:
                problems.append((f"{group}.{key}", "unknown field"))
        for key, item in value.items():
            if key not in keys or item in (None, ""):
                continue
            if group == "identity":
                if problem := path_problem(item):
                    problems.append((f"identity.{key}", problem))
            elif key == "kind":
                if item not in BACKOFF_KINDS:
                    problems.append(("backoff.kind", f"must be one of {', '.join(BACKOFF_KINDS)}"))
            elif not _positive_int(item):
                problems.append((f"{group}.{key}", "must be a positive whole number"))
        if group == "identity" and not value.get("id"):
            problems.append(("identity.id", "is required: the path of the account id in the heartbeat answer"))
    backoff = spec.get("backoff") if isinstance(spec.get("backoff"), dict) else {}
    base, cap = backoff.get("base_seconds"), backoff.get("cap_seconds")
    if _positive_int(base) and _positive_int(cap) and cap < base:
        problems.append(("backoff.cap_seconds", "must not be below backoff.base_seconds"))
    interval = spec.get("heartbeat_interval_seconds")
    if _positive_int(interval) and interval < MIN_HEARTBEAT_SECONDS:
        problems.append(("heartbeat_interval_seconds", f"must be at least {MIN_HEARTBEAT_SECONDS}"))
    return problems


def resolve_spec(slug: str, spec: Any, *, origin: str = "", discover: bool = True) -> dict:
    """Check a spec and fill it from discovery; raise BrokerSpecError naming each bad field."""
    problems: list[tuple[str, str]] = []
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        problems.append(("slug", "must be lowercase letters, digits, '-' or '_' (max 64)"))
    elif slug in RESERVED_SLUGS:
        problems.append(("slug", "is a built-in broker; choose another slug"))
    if not isinstance(spec, dict):
        raise BrokerSpecError(str(slug), [*problems, ("(broker)", "must be a mapping of fields")], origin=origin)
    spec = dict(spec)
    for key in spec:
        if key not in KNOWN_KEYS:
            problems.append((str(key), "unknown field"))
    if "api_base_url" in spec and "api_base_urls" not in spec:
        spec["api_base_urls"] = {"live": spec.pop("api_base_url")}
    for key in URL_KEYS:
        if spec.get(key) not in (None, "") and not isinstance(spec[key], str):
            problems.append((key, "must be a string URL"))
    for key in BOOL_KEYS:
        if key in spec and not isinstance(spec[key], bool):
            problems.append((key, "must be true or false"))
    for key in SECONDS_KEYS:
        value = spec.get(key)
        if value is not None and not _positive_int(value):
            problems.append((key, "must be a positive whole number of seconds (or omitted)"))
    if spec.get("token_auth_method", "client_secret_basic") not in AUTH_METHODS:
        problems.append(("token_auth_method", f"must be one of {', '.join(AUTH_METHODS)}"))
    if spec.get("revocation_scope", "token") not in REVOCATION_SCOPES:
        problems.append(("revocation_scope", f"must be one of {', '.join(REVOCATION_SCOPES)}"))
    scopes = spec.get("scopes", [])
    if isinstance(scopes, str):
        spec["scopes"] = scopes.split()
    elif not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        problems.append(("scopes", "must be a list of strings or a space-separated string"))
    bases = spec.get("api_base_urls")
    if bases is None and not spec.get("discovery_url"):
        problems.append(("api_base_url", "is required (the base URL of account calls) unless discovery_url gives it"))
    elif bases is not None and (not isinstance(bases, dict) or not bases):
        problems.append(("api_base_url", "must be a URL (or api_base_urls: a mapping of live/paper to URLs)"))
    elif bases is not None and set(bases) - {"live", "paper"}:
        problems.append(("api_base_urls", "keys must be 'live' and/or 'paper'"))
    problems.extend(_tuning_problems(spec))
    if spec.get("daily_expiry") is not None:
        try:
            hours, minutes = str(spec["daily_expiry"]).split(":")
            time(int(hours), int(minutes))
        except ValueError:
            problems.append(("daily_expiry", "must be HH:MM"))
    if problems:
        raise BrokerSpecError(slug, problems, origin=origin)

    if spec.get("discovery_url") and (problem := url_problem(spec["discovery_url"])):
        raise BrokerSpecError(slug, [("discovery_url", problem)], origin=origin)
    if discover:
        # The hosts brokerlink will call, resolved now; the clients check again at each connection.
        called = {key: spec.get(key) for key in ("discovery_url", "token_url", "revoke_url")}
        called.update({f"api_base_urls.{env}": url for env, url in (spec.get("api_base_urls") or {}).items()})
        for key, url in called.items():
            if isinstance(url, str) and url and (problem := outbound_url_problem(url)):
                problems.append((key, problem))
        if problems:
            raise BrokerSpecError(slug, problems, origin=origin)
    if discover and spec.get("discovery_url"):
        needs = ("authorize_url", "token_url", "revoke_url", "api_base_urls")
        if not all(spec.get(key) for key in needs) or "require_iss" not in spec:
            try:
                metadata, warning = discovery_metadata(spec["discovery_url"])
            except DiscoveryError as exc:
                raise BrokerSpecError(
                    slug, [("discovery_url", f"{exc} (retried in the background)")], origin=origin,
                    discovery_failed=True,
                ) from exc
            spec = apply_metadata(spec, metadata)
            if warning:
                spec["_discovery_warning"] = warning
    if not spec.get("api_base_urls"):
        problems.append(("api_base_url", "is required (the base URL of account calls)"))
    for key in ("authorize_url", "token_url"):
        if not spec.get(key):
            problems.append((key, "is required (or give a discovery_url that provides it)"))
    if problems:
        raise BrokerSpecError(slug, problems, origin=origin)
    profile_problems = validate_profile(profile_from_spec(slug, spec), require_sources=False)
    if profile_problems:
        raise BrokerSpecError(slug, [tuple(p.split(": ", 1)) for p in profile_problems], origin=origin)
    return spec


def profile_from_spec(slug: str, spec: dict) -> BrokerProfile:
    """Build a BrokerProfile from an already-resolved spec."""
    daily = spec.get("daily_expiry")
    if daily is not None:
        hours, minutes = str(daily).split(":")
        daily = time(int(hours), int(minutes))
    revoke_url = spec.get("revoke_url", "")
    rules = TokenRules(
        access_ttl=spec.get("access_ttl"),
        issues_refresh_token=spec.get("issues_refresh_token", True),
        refresh_ttl=spec.get("refresh_ttl"),
        rotates_refresh_token=spec.get("rotates_refresh_token", False),
        absolute_cap=spec.get("absolute_cap"),
        daily_expiry=daily,
        daily_expiry_tz=spec.get("daily_expiry_tz", "UTC"),
        token_auth_method=spec.get("token_auth_method", "client_secret_basic"),
        pkce=spec.get("pkce", True),
    )
    rate = spec.get("rate_limit")
    identity = spec.get("identity")
    if isinstance(identity, str):
        identity = {"id": identity}
    tuning = {
        key: spec[key]
        for key in (
            "heartbeat_interval_seconds", "refresh_margin_seconds", "refresh_deadline_seconds",
            "refresh_reuse_grace_seconds",
        )
        if spec.get(key) is not None
    }
    return BrokerProfile(
        **tuning,
        backoff=BackoffPolicy(**{k: v for k, v in (spec.get("backoff") or {}).items() if v not in (None, "")}),
        circuit=CircuitPolicy(**{k: v for k, v in (spec.get("circuit") or {}).items() if v not in (None, "")}),
        identity=IdentitySpec(**{k: v or "" for k, v in identity.items()}) if identity else None,
        require_iss=bool(spec.get("require_iss", False)),
        pkce_opt_out=spec.get("pkce_opt_out", ""),
        slug=slug,
        name=spec.get("name") or slug,
        authorize_url=spec.get("authorize_url", ""),
        token_url=spec.get("token_url", ""),
        api_base_urls=dict(spec.get("api_base_urls") or {}),
        heartbeat_path=spec.get("heartbeat_path", "/"),
        token_rules=rules,
        scopes=tuple(spec.get("scopes") or ()),
        scope_separator=spec.get("scope_separator", " ") or " ",
        revoke_url=revoke_url,
        revocation_scope=spec.get("revocation_scope", "token" if revoke_url else "none"),
        manual_revoke_url=spec.get("manual_revoke_url", ""),
        issuer=spec.get("issuer", ""),
        metadata_url=spec.get("discovery_url", ""),
        extra_authorize_params=dict(spec.get("extra_authorize_params") or {}),
        token_invalid_statuses=tuple(spec.get("token_invalid_statuses") or (401,)),
        rate_limit=RateLimit(int(rate["requests"]), int(rate["per_seconds"])) if isinstance(rate, dict) else None,
        mark=spec.get("mark") or slug[:2].upper(),
        website=spec.get("website", ""),
        notes=spec.get("notes", ""),
        is_custom=True,
    )


# --- YAML file -----------------------------------------------------------------------------

_file_cache: dict[tuple[str, float], FileResult] = {}


def brokers_file_label(path: str) -> str:
    return f"BROKERS_FILE {path}"


def read_brokers_file(path: str | os.PathLike | None = None, *, use_cache: bool = True) -> FileResult:
    """Profiles declared in the YAML file, and error messages naming each bad field.

    Results are cached per (path, mtime) so discovery runs once per file version.
    """
    path = str(path if path is not None else getattr(settings, "BROKERS_FILE", "") or "")
    if not path:
        return FileResult([], [])
    label = brokers_file_label(path)
    try:
        mtime = Path(path).stat().st_mtime
    except OSError as exc:
        return FileResult([], [f"{label}: cannot read the file ({exc.strerror})"])
    key = (path, mtime)
    cached = _file_cache.get(key)
    if use_cache and cached is not None and (cached.retry_at is None or monotonic_clock.monotonic() < cached.retry_at):
        return cached
    result = _parse_brokers_file(path, label)
    _file_cache.clear()
    _file_cache[key] = result
    return result


def _parse_brokers_file(path: str, label: str) -> FileResult:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return FileResult([], [f"{label}: cannot read the file ({exc})"])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        return FileResult([], [f"{label}: not valid YAML{where}"])
    if data is None:
        return FileResult([], [])
    if not isinstance(data, dict) or not isinstance(data.get("brokers"), dict):
        return FileResult([], [f"{label}: brokers: must be a mapping of slug -> broker fields"])
    profiles: list[BrokerProfile] = []
    errors: list[str] = []
    warnings: list[str] = []
    for slug, spec in data["brokers"].items():
        try:
            resolved = resolve_spec(str(slug), spec, origin=label)
        except BrokerSpecError as exc:
            (warnings if exc.discovery_failed else errors).extend(exc.messages())
            continue
        if warning := resolved.pop("_discovery_warning", ""):
            warnings.append(f'{label}: broker "{slug}": discovery_url: {warning}')
        profiles.append(profile_from_spec(str(slug), resolved))
    # A discovery outage is looked at again soon, so every process recovers without a restart.
    retry_at = monotonic_clock.monotonic() + DISCOVERY_RETRY_SECONDS if warnings else None
    return FileResult(profiles, errors, warnings, retry_at)


def custom_broker_resolve(broker) -> None:
    """Check a CustomBroker row before it is saved (the admin form) and fill the endpoints left
    blank from discovery, so serving it never needs the network. Raises ValidationError keyed by
    the row's fields."""
    try:
        resolved = resolve_spec(broker.slug, broker.to_spec(), origin="admin")
    except BrokerSpecError as exc:
        raise ValidationError(exc.field_errors()) from exc
    for name in RESOLVED_FIELDS:
        if not getattr(broker, name) and resolved.get(name):
            setattr(broker, name, resolved[name])
    # The API base defaults to the discovered issuer; whether callbacks carry `iss` is what the
    # metadata advertised when the form left it blank.
    if not broker.api_base_url and resolved.get("api_base_urls", {}).get("live"):
        broker.api_base_url = resolved["api_base_urls"]["live"]
    if broker.require_iss is None and "require_iss" in resolved:
        broker.require_iss = resolved["require_iss"]


# --- all custom brokers ----------------------------------------------------------------------

def admin_profiles() -> list[BrokerProfile]:
    """Enabled CustomBroker rows (already validated and resolved when saved)."""
    from brokers.models import CustomBroker

    try:
        rows = list(CustomBroker.objects.filter(enabled=True))
    except DatabaseError:  # table not migrated yet
        return []
    profiles = []
    for row in rows:
        try:
            profiles.append(profile_from_spec(row.slug, row.to_spec()))
        except (ValueError, TypeError):
            log.warning("brokers.custom.invalid_row", extra={"broker": row.slug})
    return profiles


def custom_profiles() -> list[BrokerProfile]:
    """YAML brokers, then admin brokers whose slug the file does not already use."""
    file_profiles = read_brokers_file().profiles
    taken = {p.slug for p in file_profiles} | set(RESERVED_SLUGS)
    return [*file_profiles, *(p for p in admin_profiles() if p.slug not in taken)]


# --- background discovery --------------------------------------------------------------------

def discovery_refresh_all() -> dict[str, int]:
    """Fetch every discovery URL again (YAML and admin brokers) and store what answers.

    The YAML file is re-resolved and its cached result replaced, so a broker left out during
    an outage comes back in this process at once (other processes within DISCOVERY_RETRY_SECONDS).
    """
    result = read_brokers_file(use_cache=False)
    fetched = failed = 0
    from brokers.models import CustomBroker

    try:
        urls = set(CustomBroker.objects.filter(enabled=True).exclude(discovery_url="").values_list(
            "discovery_url", flat=True))
    except DatabaseError:
        urls = set()
    for url in sorted(urls):
        try:
            discovery_metadata(url)
            fetched += 1
        except DiscoveryError:
            failed += 1
    return {"file_brokers": len(result.profiles), "file_warnings": len(result.warnings), "admin_fetched": fetched,
            "admin_failed": failed}

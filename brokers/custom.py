"""Custom brokers declared without code: a YAML file (settings.BROKERS_FILE) and Django admin.

A spec is a plain dict of generic OAuth 2.0 values, declared by `brokers.spec.BrokerSpec`.
`resolve_spec()` checks it, fetches RFC 8414 metadata from `discovery_url` to fill in missing
endpoints (`brokers.discovery`), and raises `BrokerSpecError` whose messages name the field:

    BROKERS_FILE brokers.yaml: broker "acme": token_url: must be an https:// URL
    (http only to 127.0.0.1/localhost in development)

See docs/brokers.example.yaml for the file format.
"""

from __future__ import annotations

import logging
import os
import time as monotonic_clock
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import time
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError

from brokers.discovery import DiscoveryError, apply_metadata, discovery_metadata
from brokers.identity import IdentitySpec
from brokers.profile import BackoffPolicy, BrokerProfile, CircuitPolicy, RateLimit, TokenRules
from brokers.profiles import RESERVED_SLUGS
from brokers.spec import BrokerSpecError, spec_check
from brokers.validation import validate_profile
from outbound.policy import outbound_url_problem

log = logging.getLogger(__name__)

# Seconds a failed discovery is remembered before the next lookup tries again.
DISCOVERY_RETRY_SECONDS = 60
# CustomBroker fields discovery may fill in.
RESOLVED_FIELDS = ("authorize_url", "token_url", "revoke_url", "issuer")
# What custom_broker_resolve may fill on the row: the endpoints, the API base and require_iss.
RESOLVED_FORM_FIELDS = (*RESOLVED_FIELDS, "api_base_url", "require_iss")


@dataclass(frozen=True)
class FileResult:
    profiles: list[BrokerProfile]
    errors: list[str]
    # Discovery outages: the broker is served from stored metadata, or left out until it answers.
    warnings: list[str] = dataclass_field(default_factory=list)
    # time.monotonic() after which the file is read again (a discovery outage is retried).
    retry_at: float | None = None


# --- a spec, checked and resolved ----------------------------------------------------------

def resolve_spec(slug: str, spec: Any, *, origin: str = "", discover: bool = True) -> dict:
    """Check a spec and fill it from discovery; raise BrokerSpecError naming each bad field."""
    spec, problems = spec_check(slug, spec)
    if not problems and discover:
        problems = _outbound_problems(spec)
    if problems:
        raise BrokerSpecError(str(slug), problems, origin=origin)
    if discover:
        spec = _discovered(slug, spec, origin=origin)
    problems = _completeness_problems(spec)
    if not problems:
        found = validate_profile(profile_from_spec(slug, spec), require_sources=False)
        problems = [tuple(p.split(": ", 1)) for p in found]
    if problems:
        raise BrokerSpecError(slug, problems, origin=origin)
    return spec


def _outbound_problems(spec: dict) -> list[tuple[str, str]]:
    """The hosts brokerlink will call, resolved now; the clients check again at each connection."""
    called = {key: spec.get(key) for key in ("discovery_url", "token_url", "revoke_url")}
    called.update({f"api_base_urls.{env}": url for env, url in (spec.get("api_base_urls") or {}).items()})
    return [(key, problem) for key, url in called.items() if url and (problem := outbound_url_problem(url))]


def _discovered(slug: str, spec: dict, *, origin: str) -> dict:
    """The spec with what its discovery_url's metadata gives, when it needs any."""
    needs = ("authorize_url", "token_url", "revoke_url", "api_base_urls")
    if not spec.get("discovery_url") or (all(spec.get(key) for key in needs) and "require_iss" in spec):
        return spec
    try:
        metadata, warning = discovery_metadata(spec["discovery_url"])
    except DiscoveryError as exc:
        raise BrokerSpecError(
            slug, [("discovery_url", f"{exc} (retried in the background)")], origin=origin, discovery_failed=True,
        ) from exc
    spec = apply_metadata(spec, metadata)
    if warning:
        spec["_discovery_warning"] = warning
    return spec


def _completeness_problems(spec: dict) -> list[tuple[str, str]]:
    problems = []
    if not spec.get("api_base_urls"):
        problems.append(("api_base_url", "is required (the base URL of account calls)"))
    for key in ("authorize_url", "token_url"):
        if not spec.get(key):
            problems.append((key, "is required (or give a discovery_url that provides it)"))
    return problems


def profile_from_spec(slug: str, spec: dict) -> BrokerProfile:
    """Build a BrokerProfile from an already-resolved spec."""
    rules = _token_rules_from_spec(spec)
    revoke_url = spec.get("revoke_url", "")
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
        backoff=BackoffPolicy(**_policy_fields(spec, "backoff")),
        circuit=CircuitPolicy(**_policy_fields(spec, "circuit")),
        identity=_identity_from_spec(spec),
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
        rate_limit=_rate_limit_from_spec(spec),
        mark=spec.get("mark") or slug[:2].upper(),
        website=spec.get("website", ""),
        notes=spec.get("notes", ""),
        is_custom=True,
    )


def _token_rules_from_spec(spec: dict) -> TokenRules:
    """The spec's token rules; `daily_expiry` is "HH:MM"."""
    daily = spec.get("daily_expiry")
    if daily is not None:
        hours, minutes = str(daily).split(":")
        daily = time(int(hours), int(minutes))
    return TokenRules(
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


def _policy_fields(spec: dict, key: str) -> dict:
    """A policy's fields the spec sets (blank ones keep the policy's default)."""
    return {k: v for k, v in (spec.get(key) or {}).items() if v not in (None, "")}


def _identity_from_spec(spec: dict) -> IdentitySpec | None:
    """Where the account id is in the identity answer; a bare string names the id alone."""
    identity = spec.get("identity")
    if isinstance(identity, str):
        identity = {"id": identity}
    return IdentitySpec(**{k: v or "" for k, v in identity.items()}) if identity else None


def _rate_limit_from_spec(spec: dict) -> RateLimit | None:
    rate = spec.get("rate_limit")
    return RateLimit(int(rate["requests"]), int(rate["per_seconds"])) if isinstance(rate, dict) else None


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

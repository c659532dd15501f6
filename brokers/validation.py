"""Checks of a broker profile and its URLs: used by the registry's system check, custom brokers
(YAML and admin) and the tests. Depends on nothing but the profile dataclass."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from brokers.profile import BrokerProfile

# Values every built-in profile must cite a source for.
REQUIRED_SOURCES = ("authorize_url", "token_url", "token_rules")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def url_problem(url: str) -> str | None:
    """Why `url` is unacceptable for a broker endpoint, or None if it is fine."""
    parts = urlsplit(url or "")
    if not parts.scheme or not parts.hostname:
        return "must be an absolute https:// URL"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _is_local(parts.hostname):
        return None
    return "must be an https:// URL (http allowed only for 127.0.0.1/localhost)"


def _is_local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_profile(profile: BrokerProfile, *, require_sources: bool = True) -> list[str]:
    """Problems with a profile, each naming the field, e.g. "token_url: must be an https:// URL"."""
    problems: list[str] = []
    if not profile.slug or not profile.slug.replace("-", "").replace("_", "").isalnum():
        problems.append("slug: must be letters, digits, '-' or '_'")
    if not profile.name:
        problems.append("name: is required")
    urls = {"authorize_url": profile.authorize_url, "token_url": profile.token_url}
    for env, base in profile.api_base_urls.items():
        urls[f"api_base_urls.{env}"] = base
    for env, overrides in profile.environment_urls.items():
        for name, value in overrides.items():
            urls[f"environment_urls.{env}.{name}"] = value
    for name in ("revoke_url", "manual_revoke_url", "metadata_url"):
        if getattr(profile, name):
            urls[name] = getattr(profile, name)
    for name, url in urls.items():
        if problem := url_problem(url):
            problems.append(f"{name}: {problem}")
    if "live" not in profile.api_base_urls and "paper" not in profile.api_base_urls:
        problems.append("api_base_urls: needs a 'live' or 'paper' entry")
    if not profile.heartbeat_path.startswith("/"):
        problems.append("heartbeat_path: must start with '/'")
    if profile.revocation_scope in ("token", "grant", "all_users_of_key") and not profile.revoke_url:
        problems.append(f"revoke_url: is required when revocation_scope is {profile.revocation_scope!r}")
    if not profile.is_custom and not profile.can_revoke_single_user and not profile.manual_revoke_url:
        problems.append("manual_revoke_url: is required when brokerlink cannot revoke a single user's tokens")
    rules = profile.token_rules
    if rules.token_auth_method not in ("client_secret_basic", "client_secret_post", "none"):
        problems.append("token_auth_method: must be client_secret_basic, client_secret_post or none")
    for name in ("access_ttl", "refresh_ttl", "absolute_cap"):
        value = getattr(rules, name)
        if value is not None and value <= 0:
            problems.append(f"{name}: must be a positive number of seconds")
    if rules.daily_expiry is not None:
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(rules.daily_expiry_tz)
        except Exception:  # noqa: BLE001 - any failure means an unusable zone name
            problems.append(f"daily_expiry_tz: unknown time zone {rules.daily_expiry_tz!r}")
    if require_sources and not profile.is_custom:
        for name in REQUIRED_SOURCES:
            if not profile.sources.get(name):
                problems.append(f"sources: no source for {name}")
    return problems

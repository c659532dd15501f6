"""The broker registry: an explicit list of built-in profiles plus operator-declared ones.

    get_profile("alpaca")            -> BrokerProfile (raises UnknownBroker)
    all_profiles()                   -> built-ins, the sandbox, then custom brokers (YAML, admin)
    profile_can_revoke_single_user() -> False for TradeStation-like "revoke everyone" endpoints
    profile_for_sandbox_emulation()  -> a real profile re-pointed at the sandbox broker

No import-time discovery: adding a broker means adding a module under brokers/profiles/
and one line in BUILTIN_PROFILES.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from urllib.parse import urlsplit

from brokers.profile import BrokerProfile
from brokers.profiles import (
    alpaca,
    coinbase,
    questrade,
    sandbox,
    saxo,
    schwab,
    tastytrade,
    tradestation,
    tradier,
    upstox,
)

BUILTIN_PROFILES: tuple[BrokerProfile, ...] = (
    alpaca.PROFILE,
    schwab.PROFILE,
    tradestation.PROFILE,
    tradier.PROFILE,
    questrade.PROFILE,
    saxo.PROFILE,
    coinbase.PROFILE,
    tastytrade.PROFILE,
    upstox.PROFILE,
)
SANDBOX_SLUG = "sandbox"
RESERVED_SLUGS = frozenset({p.slug for p in BUILTIN_PROFILES} | {SANDBOX_SLUG})

# Values every built-in profile must cite a source for.
REQUIRED_SOURCES = ("authorize_url", "token_url", "token_rules")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class UnknownBroker(LookupError):
    def __init__(self, slug: str):
        super().__init__(f"unknown broker {slug!r}")
        self.slug = slug


def builtin_profiles() -> list[BrokerProfile]:
    """The code-declared profiles, the sandbox last (built now, from current settings)."""
    return [*BUILTIN_PROFILES, sandbox.build_profile()]


def all_profiles() -> list[BrokerProfile]:
    from brokers.custom import custom_profiles

    return [*builtin_profiles(), *custom_profiles()]


def get_profile(slug: str) -> BrokerProfile:
    if slug == SANDBOX_SLUG:
        return sandbox.build_profile()
    for profile in BUILTIN_PROFILES:
        if profile.slug == slug:
            return profile
    from brokers.custom import custom_profiles

    for profile in custom_profiles():
        if profile.slug == slug:
            return profile
    raise UnknownBroker(slug)


def profile_can_revoke_single_user(profile: BrokerProfile) -> bool:
    """Whether disconnecting one user may call the broker's revoke endpoint.

    TradeStation's endpoint revokes every refresh token of the API key
    (revocation_scope="all_users_of_key"): calling it for one user would disconnect all of
    them, so brokerlink wipes local tokens and points the user at `manual_revoke_url`.
    """
    return profile.can_revoke_single_user


def profile_for_sandbox_emulation(slug: str, *, root: str | None = None) -> BrokerProfile:
    """The real profile `slug` with every URL pointed at the sandbox broker.

    Token rules, scopes, client authentication, revocation scope and hooks are kept, so the
    sandbox (which reads `get_profile(slug).token_rules`) can behave like that broker and the
    contract suite can connect, refresh and disconnect through brokerlink's real code. Hooks
    fall back to the default payload parsing when the sandbox's shapes differ. A broker with
    no revocation endpoint keeps none: disconnect must behave as it would for real.
    `root` defaults to settings.SANDBOX_BASE_URL (pass a per-broker path if the sandbox
    distinguishes emulated brokers by URL).
    """
    real = get_profile(slug)
    base = (root or sandbox.sandbox_root()).rstrip("/")
    return replace(
        real,
        authorize_url=f"{base}/oauth/authorize",
        token_url=f"{base}/oauth/token",
        revoke_url=f"{base}/oauth/revoke" if real.revoke_url else "",
        metadata_url=f"{base}/.well-known/oauth-authorization-server",
        issuer=base if real.issuer else "",
        require_iss=real.require_iss,
        api_base_urls={env: base for env in (real.api_base_urls or {"live": ""})},
        heartbeat_path="/v1/account",
        environment_urls={},
        sandbox_emulation=True,
    )


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

"""The broker registry: an explicit list of built-in profiles plus operator-declared ones.

    get_profile("alpaca")            -> BrokerProfile (raises UnknownBroker)
    all_profiles()                   -> built-ins, the sandbox, then custom brokers (YAML, admin)
    profile_can_revoke_single_user() -> False for TradeStation-like "revoke everyone" endpoints
    profile_for_sandbox_emulation()  -> a real profile re-pointed at the sandbox broker

No import-time discovery: adding a broker means adding a module under brokers/profiles/
and one line in BUILTIN_PROFILES (brokers/profiles/__init__.py). Custom brokers come in through
one function, `brokers.custom.custom_profiles()`; the checks of a profile live in
brokers/validation.py, so neither custom.py nor models.py needs the registry.
"""

from __future__ import annotations

from dataclasses import replace

from brokers.custom import custom_profiles
from brokers.profile import BrokerProfile
from brokers.profiles import BUILTIN_PROFILES, RESERVED_SLUGS, SANDBOX_SLUG, sandbox

# Re-exported: long-standing import paths of the profile list and the validators.
from brokers.validation import url_problem, validate_profile

__all__ = [
    "BUILTIN_PROFILES", "RESERVED_SLUGS", "SANDBOX_SLUG", "UnknownBroker", "all_profiles", "builtin_profiles",
    "get_profile", "profile_can_revoke_single_user", "profile_for_sandbox_emulation", "url_problem",
    "validate_profile",
]



class UnknownBroker(LookupError):
    def __init__(self, slug: str):
        super().__init__(f"unknown broker {slug!r}")
        self.slug = slug


def builtin_profiles() -> list[BrokerProfile]:
    """The code-declared profiles, the sandbox last (built now, from current settings)."""
    return [*BUILTIN_PROFILES, sandbox.build_profile()]


def all_profiles() -> list[BrokerProfile]:
    return [*builtin_profiles(), *custom_profiles()]


def get_profile(slug: str) -> BrokerProfile:
    if slug == SANDBOX_SLUG:
        return sandbox.build_profile()
    for profile in BUILTIN_PROFILES:
        if profile.slug == slug:
            return profile
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

from datetime import time
from urllib.parse import urlsplit

import pytest

from brokers.profile import BrokerProfile
from brokers.registry import (
    BUILTIN_PROFILES,
    UnknownBroker,
    all_profiles,
    builtin_profiles,
    get_profile,
    profile_can_revoke_single_user,
    profile_for_sandbox_emulation,
    validate_profile,
)

REAL_SLUGS = ["alpaca", "schwab", "tradestation", "tradier", "questrade", "saxo", "coinbase", "tastytrade", "upstox"]


def test_registry_lists_every_required_broker():
    assert [p.slug for p in BUILTIN_PROFILES] == REAL_SLUGS
    assert builtin_profiles()[-1].slug == "sandbox"


@pytest.mark.parametrize("slug", REAL_SLUGS)
def test_real_profile_validates_with_https_urls_and_sources(slug):
    profile = get_profile(slug)
    assert validate_profile(profile) == []
    urls = [profile.authorize_url, profile.token_url, *profile.api_base_urls.values()]
    urls += [url for env in profile.environment_urls.values() for url in env.values()]
    if profile.revoke_url:
        urls.append(profile.revoke_url)
    assert all(urlsplit(url).scheme == "https" for url in urls), urls
    for key in ("authorize_url", "token_url", "token_rules"):
        assert profile.sources[key].startswith("https://"), key
    assert profile.heartbeat_path.startswith("/")
    assert profile.mark and profile.name


@pytest.mark.parametrize("slug", REAL_SLUGS)
def test_profiles_without_single_user_revocation_name_a_manual_page(slug):
    profile = get_profile(slug)
    if not profile_can_revoke_single_user(profile):
        assert profile.manual_revoke_url.startswith("https://")


@pytest.mark.django_db
def test_unknown_broker_names_the_slug():
    with pytest.raises(UnknownBroker) as info:
        get_profile("nope")
    assert info.value.slug == "nope"
    assert "nope" in str(info.value)


def test_tradestation_revoke_endpoint_is_never_for_one_user():
    profile = get_profile("tradestation")
    assert profile.revoke_url == "https://signin.tradestation.com/oauth/revoke"
    assert profile.revocation_scope == "all_users_of_key"
    assert profile_can_revoke_single_user(profile) is False
    assert profile_can_revoke_single_user(get_profile("coinbase")) is True


@pytest.mark.parametrize("slug", ["alpaca", "schwab", "tradier", "questrade", "saxo", "tastytrade", "upstox"])
def test_brokers_without_revocation_endpoint(slug):
    profile = get_profile(slug)
    assert profile.revocation_scope == "none"
    assert profile.revoke_url == ""
    assert profile_can_revoke_single_user(profile) is False


def test_questrade_uses_the_per_token_api_server():
    profile = get_profile("questrade")
    meta = profile.hooks.token_meta(
        {"access_token": "a", "refresh_token": "r", "expires_in": 1800, "api_server": "https://api05.iq.questrade.com/"}
    )
    assert meta == {"api_server": "https://api05.iq.questrade.com"}
    assert "access_token" not in meta
    assert profile.hooks.api_base_url(profile, environment="live", token_meta=meta) == "https://api05.iq.questrade.com"
    assert profile.hooks.api_base_url(profile, environment="live", token_meta={}) == profile.api_base_urls["live"]
    account = profile.hooks.parse_account({"accounts": [{"type": "TFSA", "number": "26598145", "isPrimary": True}]})
    assert account["account_id"] == "26598145"
    assert account["masked_number"] == "••8145"
    assert profile.token_rules.rotates_refresh_token is True


def test_schwab_absolute_cap_is_seven_days_and_account_hash_is_kept():
    profile = get_profile("schwab")
    assert profile.token_rules.absolute_cap == 7 * 24 * 3600
    assert profile.token_rules.access_ttl == 1800
    assert profile.token_rules.token_auth_method == "client_secret_basic"
    account = profile.hooks.parse_account([{"accountNumber": "12345678", "hashValue": "ABCDEF0123"}])
    assert account["hash_value"] == "ABCDEF0123"
    assert account["account_id"] == "ABCDEF0123"
    assert account["masked_number"] == "••5678"
    assert "12345678" not in account["masked_number"]


def test_upstox_expires_daily_at_0330_kolkata():
    rules = get_profile("upstox").token_rules
    assert rules.daily_expiry == time(3, 30)
    assert rules.daily_expiry_tz == "Asia/Kolkata"
    assert rules.issues_refresh_token is False


def test_paper_hosts_and_environment_overrides():
    assert get_profile("alpaca").api_base_urls["paper"] == "https://paper-api.alpaca.markets"
    assert get_profile("tradestation").api_base_urls["paper"] == "https://sim-api.tradestation.com"
    saxo_paper = get_profile("saxo").for_environment("paper")
    assert saxo_paper.authorize_url == "https://sim.logonvalidation.net/authorize"
    assert get_profile("saxo").for_environment("live").authorize_url != saxo_paper.authorize_url
    assert get_profile("tradier").scope_separator == ","
    assert get_profile("schwab").environments == ("live",)


def test_sandbox_profile_follows_settings_at_call_time(settings):
    settings.SANDBOX_BASE_URL = "http://127.0.0.1:9100"
    profile = get_profile("sandbox")
    assert profile.authorize_url == "http://127.0.0.1:9100/oauth/authorize"
    assert profile.token_url == "http://127.0.0.1:9100/oauth/token"
    assert profile.revoke_url == "http://127.0.0.1:9100/oauth/revoke"
    assert profile.metadata_url == "http://127.0.0.1:9100/.well-known/oauth-authorization-server"
    assert profile.issuer == "http://127.0.0.1:9100"
    assert profile.hooks.api_base_url(profile, environment="paper", token_meta={}) + profile.heartbeat_path == (
        "http://127.0.0.1:9100/v1/account"
    )
    assert profile.is_sandbox and validate_profile(profile) == []
    settings.SANDBOX_BASE_URL = "http://127.0.0.1:8000/sandbox"
    assert get_profile("sandbox").token_url == "http://127.0.0.1:8000/sandbox/oauth/token"


@pytest.mark.parametrize("slug", REAL_SLUGS)
def test_every_real_profile_can_be_emulated_by_the_sandbox(settings, slug):
    settings.SANDBOX_BASE_URL = "http://127.0.0.1:9100"
    real = get_profile(slug)
    emulated = profile_for_sandbox_emulation(slug)
    assert isinstance(emulated, BrokerProfile)
    assert emulated.slug == slug and emulated.sandbox_emulation
    assert emulated.token_rules == real.token_rules
    assert emulated.revocation_scope == real.revocation_scope
    assert emulated.token_url == "http://127.0.0.1:9100/oauth/token"
    assert emulated.revoke_url == ("http://127.0.0.1:9100/oauth/revoke" if real.revoke_url else "")
    base = emulated.hooks.api_base_url(emulated, environment="live", token_meta={})
    assert base + emulated.heartbeat_path == "http://127.0.0.1:9100/v1/account"
    # Hooks fall back to the default parsing for the sandbox's account payload.
    account = emulated.hooks.parse_account({"id": "acc_1", "account_number": "PA0001234", "paper": True})
    assert account["account_id"] == "acc_1" and account["masked_number"] == "••1234"
    assert validate_profile(emulated, require_sources=False) == []


@pytest.mark.django_db
def test_all_profiles_includes_builtins_and_sandbox():
    slugs = [p.slug for p in all_profiles()]
    assert slugs[: len(REAL_SLUGS) + 1] == [*REAL_SLUGS, "sandbox"]

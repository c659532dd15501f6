"""Tradier Brokerage API."""
# ruff: noqa: S105, S106 - "token_url"/"token_auth_method" are endpoint names, not passwords

from typing import Any

from brokers.profile import BrokerHooks, BrokerProfile, RateLimit, TokenRules, mask_account_number

AUTHENTICATION = "https://documentation.tradier.com/brokerage-api/overview/authentication"
AUTHORIZATION_CODE = "https://documentation.tradier.com/brokerage-api/oauth/authorization-code"
ACCESS_TOKEN = "https://documentation.tradier.com/brokerage-api/oauth/access-token"
REFRESH_TOKEN = "https://documentation.tradier.com/brokerage-api/oauth/refresh-token"
PROFILE_DOC = "https://docs.tradier.com/docs/profile"
RATE_LIMIT = "https://documentation.tradier.com/brokerage-api/overview/rate-limiting"


class TradierHooks(BrokerHooks):
    """`GET /v1/user/profile` answers {"profile": {"id", "name", "account": {...} or [...]}}."""

    def parse_account(self, payload: Any) -> dict:
        profile = payload.get("profile") if isinstance(payload, dict) else None
        if isinstance(profile, dict):
            accounts = profile.get("account") or []
            first = accounts[0] if isinstance(accounts, list) and accounts else accounts
            number = str(first.get("account_number", "")) if isinstance(first, dict) else ""
            return {
                "account_id": number or str(profile.get("id", "")),
                "masked_number": mask_account_number(number),
                "label": str(profile.get("name", "")),
                "paper": False,
            }
        return super().parse_account(payload)


PROFILE = BrokerProfile(
    slug="tradier",
    name="Tradier",
    description="US stocks and options through Tradier Brokerage.",
    mark="TR",
    website="https://tradier.com",
    authorize_url="https://api.tradier.com/v1/oauth/authorize",  # AUTHORIZATION_CODE
    token_url="https://api.tradier.com/v1/oauth/accesstoken",  # ACCESS_TOKEN
    # Paper: "change the hostname to https://sandbox.tradier.com" (REFRESH_TOKEN).
    api_base_urls={"live": "https://api.tradier.com", "paper": "https://sandbox.tradier.com"},
    heartbeat_path="/v1/user/profile",  # PROFILE_DOC
    # "read" only: of the documented read, write, market, trade, stream (AUTHORIZATION_CODE),
    # the user profile heartbeat needs read and brokerlink never writes or trades.
    scopes=("read",),
    scope_separator=",",  # comma-delimited (AUTHORIZATION_CODE)
    token_rules=TokenRules(
        access_ttl=86400,  # "expire every 24 hours" (AUTHENTICATION); expires_in 86399 (ACCESS_TOKEN)
        # Refresh tokens are for approved Tradier Partners only (REFRESH_TOKEN); assume none.
        issues_refresh_token=False,
        refresh_ttl=None,  # partners: "Refresh tokens do not expire"
        rotates_refresh_token=False,  # unconfirmed
        token_auth_method="client_secret_basic",  # ACCESS_TOKEN
        pkce=False,  # unconfirmed
    ),
    token_invalid_statuses=(401,),  # body unconfirmed
    revoke_url="",  # unconfirmed: none documented
    revocation_scope="none",
    manual_revoke_url="https://dash.tradier.com/",  # exact page unconfirmed
    # Standard bucket: 120/min production, 60/min sandbox, per access token.
    rate_limit=RateLimit(120, 60, source=RATE_LIMIT),
    hooks=TradierHooks(),
    notes="Without partner refresh tokens the user re-authorizes every 24 hours.",
    sources={
        "authorize_url": AUTHORIZATION_CODE,
        "token_url": ACCESS_TOKEN,
        "scopes": AUTHORIZATION_CODE,
        "token_rules": AUTHENTICATION,
        "token_auth_method": ACCESS_TOKEN,
        "issues_refresh_token": REFRESH_TOKEN,
        "api_base_urls": REFRESH_TOKEN,
        "heartbeat_path": PROFILE_DOC,
        "rate_limit": RATE_LIMIT,
    },
)

"""TradeStation API v3 (Auth0)."""
# ruff: noqa: S105, S106 - "token_url"/"token_auth_method" are endpoint names, not passwords

from typing import Any

from brokers.profile import BrokerHooks, BrokerProfile, RateLimit, TokenRules, mask_account_number

AUTH_OVERVIEW = "https://api.tradestation.com/docs/fundamentals/authentication/auth-overview/"
AUTH_CODE = "https://api.tradestation.com/docs/fundamentals/authentication/auth-code/"
REFRESH = "https://api.tradestation.com/docs/fundamentals/authentication/refresh-tokens/"
SIM_VS_LIVE = "https://api.tradestation.com/docs/fundamentals/sim-vs-live"
RATE_LIMIT = "https://api.tradestation.com/docs/fundamentals/rate-limiting"


class TradeStationHooks(BrokerHooks):
    def parse_account(self, payload: Any) -> dict:
        accounts = payload.get("Accounts") if isinstance(payload, dict) else None
        if isinstance(accounts, list) and accounts:
            first = accounts[0]
            number = str(first.get("AccountID", ""))
            return {
                "account_id": number,
                "masked_number": mask_account_number(number),
                "label": str(first.get("AccountType", "")),
                "paper": number.upper().startswith("SIM"),
            }
        return super().parse_account(payload)


PROFILE = BrokerProfile(
    slug="tradestation",
    name="TradeStation",
    description="Stocks, options and futures with advanced trading tools.",
    mark="TS",
    website="https://www.tradestation.com",
    authorize_url="https://signin.tradestation.com/authorize",  # AUTH_CODE
    token_url="https://signin.tradestation.com/oauth/token",  # REFRESH
    extra_authorize_params={"audience": "https://api.tradestation.com"},  # AUTH_CODE
    api_base_urls={"live": "https://api.tradestation.com", "paper": "https://sim-api.tradestation.com"},  # SIM_VS_LIVE
    heartbeat_path="/v3/brokerage/accounts",  # RATE_LIMIT (Accounts quota)
    # openid always; offline_access for a refresh token; ReadAccount for the accounts heartbeat
    # (AUTH_CODE). MarketData and Trade are left out: brokerlink only reads the account.
    scopes=("openid", "offline_access", "ReadAccount"),
    token_rules=TokenRules(
        access_ttl=1200,  # expires_in 1200 (REFRESH)
        issues_refresh_token=True,
        # Default keys: refresh tokens "valid indefinitely". Keys with rotation switched on rotate every
        # 30 min (40 in an older page) with a 24 h absolute lifetime (REFRESH).
        refresh_ttl=None,
        rotates_refresh_token=False,
        token_auth_method="client_secret_post",  # client_id + client_secret in the form (REFRESH)
        pkce=False,  # default keys are "Regular Web App"; PKCE only after Client Services switch (AUTH_OVERVIEW)
    ),
    token_invalid_statuses=(401,),  # auth error body unconfirmed
    # "Making a Refresh Token revocation request will revoke ALL Refresh Tokens for that API key" (REFRESH):
    # brokerlink never calls it for one user's disconnect.
    revoke_url="https://signin.tradestation.com/oauth/revoke",
    revocation_scope="all_users_of_key",
    manual_revoke_url="https://www.tradestation.com/",  # per-user revocation page unconfirmed
    rate_limit=RateLimit(250, 300, source=RATE_LIMIT),  # Accounts: 250 per 5 min per user per key
    hooks=TradeStationHooks(),
    notes="The revoke endpoint revokes every user's refresh token for the API key, so disconnect only wipes "
    "local tokens. Logout ends the SSO session but does not invalidate tokens.",
    sources={
        "authorize_url": AUTH_CODE,
        "token_url": REFRESH,
        "scopes": AUTH_CODE,
        "token_rules": REFRESH,
        "token_auth_method": REFRESH,
        "pkce": AUTH_OVERVIEW,
        "revoke_url": REFRESH,
        "revocation_scope": REFRESH,
        "api_base_urls": SIM_VS_LIVE,
        "heartbeat_path": RATE_LIMIT,
        "rate_limit": RATE_LIMIT,
    },
)

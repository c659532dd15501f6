"""Coinbase App OAuth2 (also covers Advanced Trade)."""
# ruff: noqa: S105, S106 - "token_url"/"token_auth_method" are endpoint names, not passwords

from typing import Any

from brokers.profile import BrokerHooks, BrokerProfile, ErrorShape, RateLimit, TokenRules

OVERVIEW = "https://docs.cdp.coinbase.com/coinbase-app/oauth2-integration/overview"
REFERENCE = "https://docs.cdp.coinbase.com/coinbase-app/oauth2-integration/reference"
TOKENS = "https://docs.cdp.coinbase.com/coinbase-app/oauth2-integration/access-and-refresh-tokens"
QUICKSTART = "https://docs.cdp.coinbase.com/coinbase-app/oauth2-integration/quickstart"
RATE_LIMIT = "https://docs.cdp.coinbase.com/coinbase-app/api-architecture/rate-limiting"


class CoinbaseHooks(BrokerHooks):
    """`GET /v2/user` answers {"data": {"id", "name", ...}}."""

    def parse_account(self, payload: Any) -> dict:
        data = payload.get("data") if isinstance(payload, dict) else None
        if isinstance(data, dict) and "id" in data:
            return {"account_id": str(data["id"]), "masked_number": "", "label": str(data.get("name", "")),
                    "paper": False}
        return super().parse_account(payload)


PROFILE = BrokerProfile(
    slug="coinbase",
    name="Coinbase",
    description="Buy, sell and hold crypto. Connect your Coinbase account.",
    mark="CB",
    website="https://www.coinbase.com",
    authorize_url="https://login.coinbase.com/oauth2/auth",  # REFERENCE
    token_url="https://login.coinbase.com/oauth2/token",  # changed 2024-03-27 (TOKENS)
    api_base_urls={"live": "https://api.coinbase.com"},  # no sandbox (QUICKSTART)
    heartbeat_path="/v2/user",  # unconfirmed as a heartbeat; needs wallet:user:read
    scopes=("wallet:user:read", "wallet:accounts:read", "offline_access"),  # offline_access for refresh (TOKENS)
    token_rules=TokenRules(
        access_ttl=3600,  # expires_in 3600 (TOKENS)
        issues_refresh_token=True,
        refresh_ttl=int(1.5 * 365 * 24 * 3600),  # 1.5 years (TOKENS)
        rotates_refresh_token=True,  # "can only be exchanged once" (TOKENS)
        token_auth_method="client_secret_post",  # curl example (TOKENS)
        pkce=True,  # S256 supported and recommended (OVERVIEW)
        # Expired tokens answer 401 (TOKENS); the exact bodies are unconfirmed.
        invalid_refresh=ErrorShape(401, {"error": "invalid_grant", "error_description": "refresh token is invalid"}),
        invalid_access=ErrorShape(401, {"errors": [{"id": "invalid_token", "message": "access token is invalid"}]}),
    ),
    token_invalid_statuses=(401,),
    # RFC 7009-like; "200 OK is returned for both successful and unsuccessful requests" (OVERVIEW).
    revoke_url="https://login.coinbase.com/oauth2/revoke",
    revocation_scope="token",
    manual_revoke_url="https://accounts.coinbase.com/",  # connected-apps page unconfirmed
    rate_limit=RateLimit(10000, 3600, source=RATE_LIMIT),  # per OAuth-authorized user
    hooks=CoinbaseHooks(),
    notes="Refresh tokens are single-use. New OAuth clients are limited to approved partners. The revoke endpoint "
    "always answers 200, so a 200 does not prove revocation.",
    sources={
        "authorize_url": REFERENCE,
        "token_url": TOKENS,
        "scopes": TOKENS,
        "token_rules": TOKENS,
        "token_auth_method": TOKENS,
        "pkce": OVERVIEW,
        "revoke_url": OVERVIEW,
        "api_base_urls": QUICKSTART,
        "rate_limit": RATE_LIMIT,
    },
)

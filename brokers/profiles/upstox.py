"""Upstox API v2."""
# ruff: noqa: S105, S106 - "token_url"/"token_auth_method" are endpoint names, not passwords

from datetime import time
from typing import Any

from brokers.profile import BrokerHooks, BrokerProfile, ErrorShape, RateLimit, TokenRules

AUTHORIZE = "https://upstox.com/developer/api-documentation/authorize"
GET_TOKEN = "https://upstox.com/developer/api-documentation/get-token"
LOGIN = "https://upstox.com/developer/api-documentation/login"
ERRORS = "https://upstox.com/developer/api-documentation/error-codes"


class UpstoxHooks(BrokerHooks):
    """`GET /v2/user/profile` answers {"status": "success", "data": {"user_id", "user_name", ...}}."""

    def parse_account(self, payload: Any) -> dict:
        data = payload.get("data") if isinstance(payload, dict) else None
        if isinstance(data, dict) and "user_id" in data:
            return {"account_id": str(data["user_id"]), "masked_number": "", "label": str(data.get("user_name", "")),
                    "paper": False}
        return super().parse_account(payload)


PROFILE = BrokerProfile(
    slug="upstox",
    name="Upstox",
    description="Indian stocks, mutual funds and derivatives. Upstox asks you to sign in again every day.",
    mark="UP",
    website="https://upstox.com",
    authorize_url="https://api.upstox.com/v2/login/authorization/dialog",  # AUTHORIZE
    token_url="https://api.upstox.com/v2/login/authorization/token",  # GET_TOKEN
    api_base_urls={"live": "https://api.upstox.com"},
    heartbeat_path="/v2/user/profile",  # unconfirmed path
    scopes=(),
    token_rules=TokenRules(
        # Valid "until 3:30 AM the following day, regardless of the time it was generated" (GET_TOKEN).
        access_ttl=None,
        daily_expiry=time(3, 30),
        daily_expiry_tz="Asia/Kolkata",
        issues_refresh_token=False,  # none documented: re-authenticate daily
        refresh_ttl=None,
        rotates_refresh_token=False,
        token_auth_method="client_secret_post",  # GET_TOKEN
        pkce=False,  # unconfirmed
        invalid_access=ErrorShape(
            401,
            {
                "status": "error",
                "errors": [{"errorCode": "UDAPI100050", "message": "Invalid token used to access API"}],
            },
        ),  # ERRORS
    ),
    token_invalid_statuses=(401,),
    # A logout endpoint exists (LOGIN) but its path is unconfirmed: treat as no revocation.
    revoke_url="",
    revocation_scope="none",
    manual_revoke_url="https://account.upstox.com/",  # exact page unconfirmed
    rate_limit=RateLimit(60, 60, source="unconfirmed: numbers not found; conservative default"),
    hooks=UpstoxHooks(),
    notes="Tokens expire at 03:30 IST every day; the user reconnects daily. The authorization code is single-use "
    "even when the exchange fails.",
    sources={
        "authorize_url": AUTHORIZE,
        "token_url": GET_TOKEN,
        "token_rules": GET_TOKEN,
        "daily_expiry": GET_TOKEN,
        "token_auth_method": GET_TOKEN,
        "invalid_access": ERRORS,
        "revocation_scope": LOGIN,
    },
)

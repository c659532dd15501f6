"""Charles Schwab Trader API. No official public docs in the corpus: values from client libraries."""
# ruff: noqa: S105, S106 - "token_url"/"token_auth_method" are endpoint names, not passwords

from typing import Any

from brokers.profile import BrokerHooks, BrokerProfile, ErrorShape, RateLimit, TokenRules, mask_account_number

SCHWAB_PY_AUTH = "https://github.com/alexgolec/schwab-py/blob/main/schwab/auth.py"
SCHWAB_PY_DOCS = "https://github.com/alexgolec/schwab-py/blob/main/docs/auth.rst"
SCHWABDEV_TOKENS = "https://github.com/tylerebowers/Schwabdev/blob/main/schwabdev/tokens.py"
REFRESH_ERROR = "https://github.com/tylerebowers/Schwabdev/issues/40"
ACCOUNT_NUMBERS = "https://github.com/48n116w/tda_to_schwab"
RATE_LIMIT = "https://github.com/QuantConnect/Documentation/pull/2420"

SEVEN_DAYS = 7 * 24 * 3600


class SchwabHooks(BrokerHooks):
    """Schwab account calls take an account *hash*, not the number.

    The heartbeat `GET /trader/v1/accounts/accountNumbers` answers
    `[{"accountNumber": "...", "hashValue": "..."}]`; the hash goes into `hash_value` so
    later account paths can use it, and only the masked number is shown.
    """

    def parse_account(self, payload: Any) -> dict:
        if isinstance(payload, list) and payload and isinstance(payload[0], dict) and "hashValue" in payload[0]:
            first = payload[0]
            number = str(first.get("accountNumber", ""))
            return {
                "account_id": str(first["hashValue"]),
                "masked_number": mask_account_number(number),
                "label": "Schwab " + mask_account_number(number),
                "paper": False,
                "hash_value": str(first["hashValue"]),
                "account_count": len(payload),
            }
        return super().parse_account(payload)


PROFILE = BrokerProfile(
    slug="schwab",
    name="Charles Schwab",
    description="US brokerage for stocks, ETFs, options and mutual funds. "
    "Schwab asks you to sign in again every 7 days.",
    mark="CS",
    website="https://developer.schwab.com",
    authorize_url="https://api.schwabapi.com/v1/oauth/authorize",  # SCHWAB_PY_AUTH
    token_url="https://api.schwabapi.com/v1/oauth/token",  # SCHWAB_PY_AUTH, SCHWABDEV_TOKENS
    api_base_urls={"live": "https://api.schwabapi.com"},  # no sandbox published
    heartbeat_path="/trader/v1/accounts/accountNumbers",  # ACCOUNT_NUMBERS
    # Schwab documents no read-only scope: schwab-py requests no meaningful scope and "api" is
    # what the portal shows (unconfirmed). Access is whatever the app was approved for.
    scopes=("api",),
    token_rules=TokenRules(
        access_ttl=1800,  # expires_in 1800 (SCHWAB_PY_DOCS, SCHWABDEV_TOKENS)
        issues_refresh_token=True,
        refresh_ttl=SEVEN_DAYS,
        # Whether refresh returns a new refresh token is unconfirmed: treat a returned one as the new one.
        rotates_refresh_token=False,
        # "no way to make a refresh token last longer than seven days", counted from the first login.
        absolute_cap=SEVEN_DAYS,
        token_auth_method="client_secret_basic",  # HTTP Basic app_key:app_secret (SCHWABDEV_TOKENS)
        pkce=False,  # unconfirmed
        invalid_refresh=ErrorShape(
            400,
            {
                "error": "unsupported_token_type",
                "error_description": '400 Bad Request: "{"error_description":"Exception while authenticating '
                'refresh token [...]","error":"refresh_token_authentication_error"}"',
            },
        ),  # REFRESH_ERROR
    ),
    token_invalid_statuses=(401,),  # expired access token: 401 (SCHWAB_PY_DOCS)
    revoke_url="",  # unconfirmed: no public revocation endpoint found
    revocation_scope="none",
    manual_revoke_url="https://client.schwab.com/",  # exact third-party-access page unconfirmed
    # Order requests 120/min per account; GET limits unpublished, so the same number is used.
    rate_limit=RateLimit(120, 60, source=RATE_LIMIT),
    hooks=SchwabHooks(),
    notes="Refresh tokens die 7 days after the first login, whatever refreshing happens in between: the user "
    "must log in again every week. The app must be 'Ready For Use'.",
    sources={
        "authorize_url": SCHWAB_PY_AUTH,
        "token_url": SCHWABDEV_TOKENS,
        "token_auth_method": SCHWABDEV_TOKENS,
        "token_rules": SCHWAB_PY_DOCS,
        "absolute_cap": SCHWAB_PY_DOCS,
        "invalid_refresh": REFRESH_ERROR,
        "heartbeat_path": ACCOUNT_NUMBERS,
        "api_base_urls": SCHWAB_PY_AUTH,
        "rate_limit": RATE_LIMIT,
    },
)

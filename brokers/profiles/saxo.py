"""Saxo Bank OpenAPI."""
# ruff: noqa: S105, S106 - "token_url"/"token_auth_method" are endpoint names, not passwords

from typing import Any

from brokers.profile import BrokerHooks, BrokerProfile, ErrorShape, RateLimit, TokenRules

CODE_GRANT = "https://developer.saxo/openapi/learn/oauth-authorization-code-grant"
PKCE = "https://developer.saxo/openapi/learn/oauth-authorization-code-grant-pkce"
ENVIRONMENTS = "https://developer.saxo/openapi/learn/environments"
SAMPLES_README = "https://github.com/SaxoBank/openapi-samples-js/blob/main/authentication/README.md"
SAMPLE_REFRESH = (
    "https://github.com/SaxoBank/openapi-samples-js/blob/main/authentication/oauth2-code-flow/redirect/"
    "backend-php/server-refresh-token.php"
)
HEARTBEAT = (
    "https://github.com/gidven/saxo-openapi-guide/blob/main/docs/basics/core-business-concepts/"
    "retrieving-entity-data.md"
)
RATE_LIMIT = "https://developer.saxo/openapi/learn/rate-limiting"

SIM_AUTH = "https://sim.logonvalidation.net"
# The live AuthenticationUrl is issued per app; this host is the usual one but unconfirmed.
LIVE_AUTH = "https://live.logonvalidation.net"


class SaxoHooks(BrokerHooks):
    """`GET /port/v1/users/me` answers {"ClientKey", "UserId", "Name", ...}."""

    def parse_account(self, payload: Any) -> dict:
        if isinstance(payload, dict) and "ClientKey" in payload:
            return {
                "account_id": str(payload["ClientKey"]),
                "masked_number": "",
                "label": str(payload.get("Name", "")),
                "paper": False,
            }
        return super().parse_account(payload)


PROFILE = BrokerProfile(
    slug="saxo",
    name="Saxo",
    description="Multi-asset trading from Saxo Bank: stocks, ETFs, bonds, FX and futures.",
    mark="SX",
    website="https://www.developer.saxo",
    authorize_url=f"{LIVE_AUTH}/authorize",  # {AuthenticationUrl}/authorize (CODE_GRANT); host unconfirmed
    token_url=f"{LIVE_AUTH}/token",
    environment_urls={"paper": {"authorize_url": f"{SIM_AUTH}/authorize", "token_url": f"{SIM_AUTH}/token"}},
    api_base_urls={
        "live": "https://gateway.saxobank.com/openapi",
        "paper": "https://gateway.saxobank.com/sim/openapi",  # ENVIRONMENTS
    },
    heartbeat_path="/port/v1/users/me",  # HEARTBEAT (community guide)
    scopes=(),  # "scope" is not used (CODE_GRANT)
    token_rules=TokenRules(
        access_ttl=1200,  # 20 min (SAMPLES_README)
        issues_refresh_token=True,
        refresh_ttl=3600,  # 1 h (SAMPLES_README)
        # Rotation unconfirmed; clients read a new refresh_token from every response, so plan for single use.
        rotates_refresh_token=True,
        token_auth_method="client_secret_post",  # Saxo's own sample posts the secret (SAMPLE_REFRESH)
        pkce=True,  # code + PKCE grant (PKCE)
        # The sample backend's 401 body; the OpenAPI 401 body is unconfirmed.
        invalid_access=ErrorShape(401, {"Message": "Unauthorized", "ErrorCode": "Unauthorized"}),
    ),
    token_invalid_statuses=(401,),
    revoke_url="",  # unconfirmed: no revocation endpoint found
    revocation_scope="none",
    manual_revoke_url="https://www.saxotrader.com/",  # exact page unconfirmed
    rate_limit=RateLimit(120, 60, source=RATE_LIMIT),  # 120/min per session per service group
    hooks=SaxoHooks(),
    notes="Refresh tokens last 1 h: an outage over an hour (e.g. weekend maintenance) or the user signing out "
    "of all sessions forces re-authorization. Log X-Correlation for support.",
    sources={
        "authorize_url": CODE_GRANT,
        "token_url": CODE_GRANT,
        "environment_urls": CODE_GRANT,
        "api_base_urls": ENVIRONMENTS,
        "heartbeat_path": HEARTBEAT,
        "token_rules": SAMPLES_README,
        "token_auth_method": SAMPLE_REFRESH,
        "pkce": PKCE,
        "rate_limit": RATE_LIMIT,
    },
)

"""Questrade API."""
# ruff: noqa: S105, S106 - "token_url"/"token_auth_method" are endpoint names, not passwords

import re
from typing import Any

from brokers.profile import (
    BrokerHooks,
    BrokerProfile,
    ErrorShape,
    RateLimit,
    TokenAnswerRejected,
    TokenRules,
    mask_account_number,
)

AUTHORIZATION = "https://www.questrade.com/api/documentation/authorization"
SECURITY = "https://www.questrade.com/api/documentation/security"
RATE_LIMIT = "https://www.questrade.com/api/documentation/rate-limiting"
ERRORS = "https://questrade.com/api/documentation/error-handling"
REFRESH_ROTATION = "https://implexa.ai/s/clawhub/questrade"
# api01 … api99 under iq.questrade.com, https only, optional trailing slash (SECURITY).
API_SERVER_RE = re.compile(r"^https://api\d{1,2}\.iq\.questrade\.com/?$")


class QuestradeHooks(BrokerHooks):
    """Every token response names the API server to use with that token (SECURITY).

    `api_server` ("https://api05.iq.questrade.com/") can change on each refresh, so it is
    kept in the token meta and account calls go there.
    """

    def token_meta(self, token_response: dict) -> dict:
        """Keep `api_server` only on the documented host pattern over https (SECURITY shows
        "https://api01.iq.questrade.com/"): a token answer naming any other host would have
        brokerlink send the access token there. Raises TokenAnswerRejected otherwise."""
        server = token_response.get("api_server")
        if not server:
            return {}
        if not isinstance(server, str) or not API_SERVER_RE.match(server):
            raise TokenAnswerRejected(
                "Questrade named an api_server that is not https://apiNN.iq.questrade.com/; "
                "brokerlink will not send the access token there."
            )
        return {"api_server": server.rstrip("/")}

    def api_base_url(self, profile: BrokerProfile, *, environment: str, token_meta: dict) -> str:
        server = (token_meta or {}).get("api_server")
        if server:
            return str(server).rstrip("/")
        return super().api_base_url(profile, environment=environment, token_meta=token_meta)

    def parse_account(self, payload: Any) -> dict:
        accounts = payload.get("accounts") if isinstance(payload, dict) else None
        if isinstance(accounts, list) and accounts:
            first = next((acc for acc in accounts if acc.get("isPrimary")), accounts[0])
            number = str(first.get("number", ""))
            return {
                "account_id": number,
                "masked_number": mask_account_number(number),
                "label": f"Questrade {first.get('type', '')}".strip(),
                "paper": False,
            }
        return super().parse_account(payload)


PROFILE = BrokerProfile(
    slug="questrade",
    name="Questrade",
    description="Canadian online brokerage: stocks, ETFs, options and registered accounts (TFSA, RRSP).",
    mark="QT",
    website="https://www.questrade.com",
    authorize_url="https://login.questrade.com/oauth2/authorize",  # AUTHORIZATION
    token_url="https://login.questrade.com/oauth2/token",  # SECURITY
    # Placeholder only: the real base is the per-token api_server (QuestradeHooks).
    api_base_urls={"live": "https://api01.iq.questrade.com"},  # practice host unconfirmed
    heartbeat_path="/v1/accounts",  # account-calls category (RATE_LIMIT)
    scopes=(),  # optional, comma-delimited (AUTHORIZATION)
    scope_separator=",",
    token_rules=TokenRules(
        access_ttl=1800,  # expires_in 1800 (SECURITY)
        issues_refresh_token=True,
        # Manually generated tokens last about 7 days (community, unconfirmed for OAuth grants).
        refresh_ttl=7 * 24 * 3600,
        # A new refresh token on each refresh (SECURITY); the old one is single-use (REFRESH_ROTATION, community).
        rotates_refresh_token=True,
        # "Client secret is optional and can be omitted" (AUTHORIZATION).
        token_auth_method="none",
        pkce=False,  # unconfirmed
        # Error body shape {"code", "message"} (ERRORS); the auth-specific code is unconfirmed.
        invalid_access=ErrorShape(401, {"code": 1017, "message": "Access token is invalid"}),
    ),
    token_invalid_statuses=(401,),
    # UI only: "API Centre > Personal applications, click Revoke" (SECURITY).
    revoke_url="",
    revocation_scope="none",
    manual_revoke_url="https://login.questrade.com/APIAccess/UserApps.aspx",  # API Centre page, URL unconfirmed
    rate_limit=RateLimit(30, 1, source=RATE_LIMIT),  # account calls 30/s and 30,000/h
    hooks=QuestradeHooks(),
    notes="API calls go to the api_server returned with each token. Refresh tokens are single-use.",
    sources={
        "authorize_url": AUTHORIZATION,
        "token_url": SECURITY,
        "token_rules": SECURITY,
        "rotates_refresh_token": REFRESH_ROTATION,
        "token_auth_method": AUTHORIZATION,
        "api_base_urls": SECURITY,
        "heartbeat_path": RATE_LIMIT,
        "revocation_scope": SECURITY,
        "invalid_access": ERRORS,
        "rate_limit": RATE_LIMIT,
    },
)

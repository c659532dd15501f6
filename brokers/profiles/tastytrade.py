"""tastytrade Open API."""
# ruff: noqa: S105, S106 - "token_url"/"token_auth_method" are endpoint names, not passwords

from typing import Any

from brokers.profile import BrokerHooks, BrokerProfile, RateLimit, TokenRules, mask_account_number

OAUTH_PY = "https://github.com/tastyware/tastytrade/blob/master/tastytrade/oauth.py"
SESSIONS = "https://tastyworks-api.readthedocs.io/en/v12.4.0/sessions.html"
SESSIONS_GUIDE = "https://developer.tastytrade.com/api-guides/sessions"
HEARTBEAT = "https://github.com/tastyware/tastytrade"  # public client test (community)


class TastytradeHooks(BrokerHooks):
    """`GET /customers/me/accounts` answers {"data": {"items": [{"account": {"account-number", ...}}]}}."""

    def parse_account(self, payload: Any) -> dict:
        data = payload.get("data") if isinstance(payload, dict) else None
        items = data.get("items") if isinstance(data, dict) else None
        if isinstance(items, list) and items:
            account = items[0].get("account", {})
            number = str(account.get("account-number", ""))
            return {
                "account_id": number,
                "masked_number": mask_account_number(number),
                "label": str(account.get("nickname", "")),
                "paper": False,
            }
        return super().parse_account(payload)


PROFILE = BrokerProfile(
    slug="tastytrade",
    name="tastytrade",
    description="Options, futures and stocks for active traders.",
    mark="TT",
    website="https://tastytrade.com",
    authorize_url="https://my.tastytrade.com/auth.html",  # OAUTH_PY
    token_url="https://api.tastyworks.com/oauth/token",  # OAUTH_PY
    environment_urls={
        "paper": {
            "authorize_url": "https://cert-my.staging-tasty.works/auth.html",
            "token_url": "https://api.cert.tastyworks.com/oauth/token",
        }
    },  # OAUTH_PY (sandbox)
    api_base_urls={"live": "https://api.tastyworks.com", "paper": "https://api.cert.tastyworks.com"},
    heartbeat_path="/customers/me/accounts",  # HEARTBEAT (community)
    scopes=("read", "openid"),  # OAUTH_PY asks "read trade openid"; "trade" is left out: brokerlink only reads
    token_rules=TokenRules(
        access_ttl=900,  # 15 min session token (SESSIONS)
        issues_refresh_token=True,
        refresh_ttl=None,  # "refresh tokens never expire" (SESSIONS)
        rotates_refresh_token=False,  # unconfirmed
        token_auth_method="client_secret_post",  # OAUTH_PY
        pkce=False,  # unconfirmed
    ),
    token_invalid_statuses=(401,),  # SESSIONS_GUIDE (legacy session API)
    revoke_url="",  # unconfirmed
    revocation_scope="none",
    # OAuth Applications > Manage on the website; exact URL unconfirmed.
    manual_revoke_url="https://my.tastytrade.com/",
    rate_limit=RateLimit(60, 60, source="unconfirmed: not published; conservative default"),
    hooks=TastytradeHooks(),
    notes="Many failed logins block the IP for hours.",
    sources={
        "authorize_url": OAUTH_PY,
        "token_url": OAUTH_PY,
        "environment_urls": OAUTH_PY,
        "scopes": OAUTH_PY,
        "token_rules": SESSIONS,
        "token_auth_method": OAUTH_PY,
        "heartbeat_path": HEARTBEAT,
        "token_invalid_statuses": SESSIONS_GUIDE,
    },
)

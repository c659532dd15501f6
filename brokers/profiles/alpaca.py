"""Alpaca Trading API OAuth ("Alpaca Connect")."""
# ruff: noqa: S105, S106 - "token_url"/"token_auth_method" are endpoint names, not passwords

from brokers.profile import BrokerProfile, ErrorShape, RateLimit, TokenRules

GUIDE = "https://github.com/alpacahq/alpaca-docs/blob/master/content/oauth/guide.md"
OAUTH_REF = "https://github.com/alpacahq/alpaca-docs/blob/master/content/api-references/oauth-api/_index.md"
WORKING_WITH_OAUTH = "https://docs.alpaca.markets/docs/working-with-oauth"
USING_OAUTH = "https://docs.alpaca.markets/docs/using-oauth2-and-trading-api"
RATE_LIMIT = "https://alpaca.markets/support/usage-limit-api-calls/"

PROFILE = BrokerProfile(
    slug="alpaca",
    name="Alpaca",
    description="US stocks, ETFs and crypto, commission-free. Connect a paper or live Alpaca account.",
    mark="AL",
    website="https://alpaca.markets",
    authorize_url="https://app.alpaca.markets/oauth/authorize",  # WORKING_WITH_OAUTH
    token_url="https://api.alpaca.markets/oauth/token",  # GUIDE
    # One token works against live and paper hosts (USING_OAUTH).
    api_base_urls={"live": "https://api.alpaca.markets", "paper": "https://paper-api.alpaca.markets"},
    heartbeat_path="/v2/account",  # the guide's own example call (GUIDE)
    # No scope: "Read-only endpoint access is assumed by default" (USING_OAUTH). The documented
    # scopes (account:write, trading, data; OAUTH_REF) all grant more than brokerlink reads.
    scopes=(),
    scope_separator=" ",
    token_rules=TokenRules(
        # The token response has no expires_in and no refresh_token (GUIDE); lifetime unconfirmed.
        access_ttl=None,
        issues_refresh_token=False,
        refresh_ttl=None,
        rotates_refresh_token=False,
        token_auth_method="client_secret_post",  # secret in the form body (GUIDE)
        pkce=False,  # unconfirmed: not documented, so not relied on
        # 401 is documented; the Trading-API body is unconfirmed.
        invalid_access=ErrorShape(401, {"code": 40110000, "message": "access key verification failed"}),
    ),
    token_invalid_statuses=(401,),
    # Trading-API OAuth documents no revocation endpoint (unconfirmed); the user revokes in the
    # dashboard (exact page unconfirmed).
    revoke_url="",
    revocation_scope="none",
    manual_revoke_url="https://app.alpaca.markets/",
    rate_limit=RateLimit(200, 60, source=RATE_LIMIT),  # 200 req/min per account, 429 beyond
    notes="Live trading for other users needs Alpaca app approval. No refresh token: the connection lives "
    "as long as the access token does.",
    sources={
        "authorize_url": WORKING_WITH_OAUTH,
        "token_url": GUIDE,
        "scopes": USING_OAUTH,
        "api_base_urls": USING_OAUTH,
        "heartbeat_path": GUIDE,
        "token_rules": GUIDE,
        "token_auth_method": GUIDE,
        "revocation_scope": OAUTH_REF,
        "rate_limit": RATE_LIMIT,
    },
)

"""The Sandbox Broker: brokerlink's own OAuth server for development and tests.

Its URLs follow settings.SANDBOX_BASE_URL at call time (the sandbox may be mounted in this
app at /sandbox or run standalone), so the profile is built by a function, not at import.
"""
# ruff: noqa: S105, S106 - "token_url"/"token_auth_method" are endpoint names, not passwords

from django.conf import settings

from brokers.profile import BrokerProfile, RateLimit, TokenRules

SLUG = "sandbox"
SANDBOX_DOC = "docs/sandbox.md"

TOKEN_RULES = TokenRules(
    access_ttl=900,
    issues_refresh_token=True,
    refresh_ttl=30 * 24 * 3600,
    rotates_refresh_token=True,
    token_auth_method="client_secret_basic",
    pkce=True,
)


def sandbox_root() -> str:
    return str(settings.SANDBOX_BASE_URL).rstrip("/")


def build_profile(root: str | None = None) -> BrokerProfile:
    root = (root or sandbox_root()).rstrip("/")
    return BrokerProfile(
        slug=SLUG,
        name="Sandbox Broker",
        description="A demo brokerage with paper accounts: try brokerlink without a real account or any credentials.",
        mark="SB",
        website=root,
        authorize_url=f"{root}/oauth/authorize",
        token_url=f"{root}/oauth/token",
        revoke_url=f"{root}/oauth/revoke",
        revocation_scope="token",
        metadata_url=f"{root}/.well-known/oauth-authorization-server",
        issuer=root,
        require_iss=True,  # its metadata advertises authorization_response_iss_parameter_supported
        api_base_urls={"live": root, "paper": root},
        heartbeat_path="/v1/account",
        heartbeat_interval_seconds=int(getattr(settings, "SANDBOX_HEARTBEAT_INTERVAL_SECONDS", 60)),
        scopes=("read",),  # brokerlink only reads the account
        token_rules=TOKEN_RULES,
        token_invalid_statuses=(401,),
        rate_limit=RateLimit(600, 60, source=SANDBOX_DOC),
        baseline_latency_ms=50,
        is_sandbox=True,
        notes="A real OAuth 2.0 server you control: no brokerage account needed.",
        sources={"authorize_url": SANDBOX_DOC, "token_url": SANDBOX_DOC, "token_rules": SANDBOX_DOC},
    )

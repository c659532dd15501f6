"""Tokens and grants: lifetimes, storing issued tokens, refresh-token checks (rotation and
reuse), OIDC consent, revocation, and what the account endpoint answers."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from sandbox.models import SandboxAccount, SandboxClient, SandboxGrant, SandboxToken, token_hash
from sandbox.services.counters import count
from sandbox.services.token_lookup import token_cache_clear


def next_wall_clock(now: datetime, at: dtime, tz_name: str) -> datetime:
    """The next moment the local clock in `tz_name` shows `at`, strictly after `now`."""
    tz = ZoneInfo(tz_name)
    local = now.astimezone(tz)
    candidate = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = (local + timedelta(days=1)).replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    return candidate


def access_expires_in(client: SandboxClient, now: datetime) -> int | None:
    """Seconds an access token issued now lives: the TTL, cut short by a daily wall-clock expiry."""
    candidates = []
    if client.access_ttl:
        candidates.append(client.access_ttl)
    if client.daily_expiry is not None:
        boundary = next_wall_clock(now, client.daily_expiry, client.daily_expiry_tz)
        candidates.append(int((boundary - now).total_seconds()))
    return min(candidates) if candidates else None


def token_store(*, token: dict, client: SandboxClient, grant: SandboxGrant, grant_type: str) -> SandboxToken:
    now = client.now()
    expires_in = token.get("expires_in")
    refresh = token.get("refresh_token")
    item = SandboxToken.objects.create(
        client=client,
        grant=grant,
        access_token_hash=token_hash(token["access_token"]),
        refresh_token_hash=token_hash(refresh) if refresh else None,
        scope=token.get("scope", ""),
        issued_at=now,
        access_expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
        refresh_expires_at=now + timedelta(seconds=client.refresh_ttl) if refresh and client.refresh_ttl else None,
    )
    if grant_type == "refresh_token":
        count(client, grant, "refreshes")
    count(None, grant, "token_requests")
    return item


def _in_reuse_grace(item: SandboxToken, client: SandboxClient, now: datetime) -> bool:
    grace = client.refresh_reuse_grace_seconds
    return bool(grace and item.rotated_at and now - item.rotated_at <= timedelta(seconds=grace))


def refresh_token_check(*, refresh_token: str, client: SandboxClient) -> SandboxToken | None:
    """The live token row for a refresh token, or None (the caller answers invalid_grant).
    Presenting a refresh token that was already rotated away revokes the whole grant."""
    item = (
        SandboxToken.objects.select_related("grant", "client")
        .filter(refresh_token_hash=token_hash(refresh_token), client=client)
        .first()
    )
    if item is None or client.refresh_invalid_grant:
        return None
    now = client.now()
    if item.rotated and not _in_reuse_grace(item, client, now):
        count(client, item.grant, "rotated_reuses")
        grant_revoke(item.grant, reason="rotated_reuse")
        return None
    if item.refresh_revoked or item.grant.is_revoked or item.grant.cap_reached(now):
        return None
    if item.grant.session_expires_at is not None and now >= item.grant.session_expires_at:
        return None  # OIDC mode without offline_access: the login session is over
    if item.refresh_expires_at is not None and now >= item.refresh_expires_at:
        return None
    return item


OFFLINE_ACCESS = "offline_access"


def oidc_granted_scope(client: SandboxClient, requested: str, *, prompt: str, now: datetime) -> tuple[str, Any]:
    """(granted scope, when the grant's login session ends) for one consent.

    OpenID Connect Core 1.0 §11: offline_access is ignored unless the request carries
    prompt=consent. Without it an OIDC-mode grant lives only as long as the login session
    (client.login_session_ttl), refresh tokens included. Other clients get what they asked for.
    """
    if not client.oidc:
        return requested, None
    scopes = requested.split()
    if OFFLINE_ACCESS in scopes and "consent" not in prompt.split():
        scopes = [s for s in scopes if s != OFFLINE_ACCESS]
    session_end = None if OFFLINE_ACCESS in scopes else now + timedelta(seconds=client.login_session_ttl)
    return " ".join(scopes), session_end


def userinfo_payload(token: SandboxToken) -> dict[str, Any]:
    """OIDC userinfo: the subject only, as a minimal provider answers (no account fields)."""
    return {"sub": f"sbx-user-{token.grant.user_id}"}


def grant_revoke(grant: SandboxGrant, *, reason: str) -> None:
    token_cache_clear()
    with transaction.atomic():
        SandboxGrant.objects.filter(pk=grant.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_reason=reason
        )
        grant.tokens.update(access_revoked=True, refresh_revoked=True)
    token_cache_clear()
    grant.refresh_from_db()


def token_revoke(token: SandboxToken, *, refresh: bool) -> None:
    """RFC 7009: revoking a refresh token ends the grant; an access token only itself."""
    count(None, token.grant, "revocations")
    token_cache_clear()
    if refresh:
        grant_revoke(token.grant, reason="revoked_by_client")
    else:
        SandboxToken.objects.filter(pk=token.pk).update(access_revoked=True)
        token_cache_clear()


def token_for_access(access_token: str) -> SandboxToken | None:
    return (
        SandboxToken.objects.select_related("client", "grant__account")
        .filter(access_token_hash=token_hash(access_token))
        .first()
    )


def account_payload(account: SandboxAccount) -> dict[str, Any]:
    return {
        "id": f"sbx-acct-{account.pk}",
        "account_number": account.account_number,
        "masked_number": account.masked_number,
        "label": account.label,
        "status": account.status,
        "paper": account.paper,
    }

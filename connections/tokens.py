"""Storing a token response on a connection, and the expiry arithmetic broker rules need."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from brokers.profile import BrokerProfile, TokenRules
from connections.models import Connection


def next_daily_expiry(rules: TokenRules, *, now: datetime) -> datetime | None:
    """The next wall-clock expiry (e.g. 03:30 Asia/Kolkata) after `now`, in UTC."""
    if rules.daily_expiry is None:
        return None
    zone = ZoneInfo(rules.daily_expiry_tz)
    local_now = now.astimezone(zone)
    candidate = local_now.replace(
        hour=rules.daily_expiry.hour, minute=rules.daily_expiry.minute, second=0, microsecond=0
    )
    if candidate <= local_now:
        candidate += timedelta(days=1)
    return candidate.astimezone(ZoneInfo("UTC"))


def _min(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def connection_apply_token_response(
    *, connection: Connection, profile: BrokerProfile, token: dict, now: datetime | None = None, first_grant: bool
) -> None:
    """Put a token endpoint's answer on the connection (not saved).

    A rotated refresh token replaces the old one; a response without one keeps the old
    refresh token (brokers that do not rotate). Absolute caps count from the grant's first
    consent, which a refresh never moves.
    """
    now = now or timezone.now()
    rules = profile.token_rules
    connection.access_token = token["access_token"]
    if token.get("refresh_token"):
        connection.refresh_token = token["refresh_token"]
    elif first_grant:
        connection.refresh_token = ""
    connection.token_type = str(token.get("token_type") or "Bearer")[:32]
    if token.get("scope"):
        connection.scope = str(token["scope"])
    if first_grant or connection.grant_started_at is None:
        connection.grant_started_at = now

    expires_in = token.get("expires_in")
    ttl_expiry = None
    try:
        if expires_in not in (None, ""):
            ttl_expiry = now + timedelta(seconds=float(expires_in))
    except (TypeError, ValueError):
        ttl_expiry = None
    if ttl_expiry is None and rules.access_ttl:
        ttl_expiry = now + timedelta(seconds=rules.access_ttl)
    cap = connection.grant_started_at + timedelta(seconds=rules.absolute_cap) if rules.absolute_cap else None
    daily = next_daily_expiry(rules, now=now)
    connection.access_expires_at = _min(ttl_expiry, daily, cap)

    if connection.refresh_token_sealed:
        refresh_in = token.get("refresh_token_expires_in")
        refresh_ttl_expiry = None
        if refresh_in not in (None, ""):
            refresh_ttl_expiry = now + timedelta(seconds=float(refresh_in))
        elif rules.refresh_ttl:
            refresh_ttl_expiry = now + timedelta(seconds=rules.refresh_ttl)
        connection.refresh_expires_at = _min(refresh_ttl_expiry, cap)
    else:
        connection.refresh_expires_at = None
    # Without a refresh token the access token's expiry is when the user must log in again.
    connection.reauth_deadline_at = _min(cap, None if connection.refresh_token_sealed else connection.access_expires_at)
    connection.last_refreshed_at = now
    meta = dict(connection.token_meta or {})
    meta.update(profile.hooks.token_meta(token))
    connection.token_meta = meta

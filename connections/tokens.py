"""Storing a token response on a connection, and the expiry arithmetic broker rules need."""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.profile import BrokerProfile, TokenAnswerRejected, TokenRules
from connections.errors import UNEXPECTED, BrokerError
from connections.models import Connection

logger = logging.getLogger(__name__)

# Printable ASCII without spaces: what an HTTP header value and a form field can carry
# unchanged (RFC 6750's b64token is a subset). Longer than any broker token seen (~2 KB JWTs).
TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{1,8192}")
TOKEN_TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
# Lifetimes beyond ten years are not lifetimes (one broker sent 1e20): treated as absent.
BEARER = "Bearer"  # noqa: S105 - a scheme name
MAX_LIFETIME_SECONDS = 10 * 365 * 24 * 3600


def _lifetime(value) -> float | None:
    """A usable lifetime in seconds, or None for absent/absurd values (never an exception)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_LIFETIME_SECONDS:
        return None
    return seconds


@sensitive_variables()
def token_response_clean(profile: BrokerProfile, token: dict) -> tuple[dict, list[str]]:
    """Check a token endpoint's answer before anything is stored.

    Returns (clean answer, notes). Unusable lifetimes and scopes are dropped with a note (the
    profile's documented lifetime then applies), so a rotated refresh token is never thrown
    away over a bad number. Raises BrokerError(UNEXPECTED) when the tokens themselves cannot
    be used: missing or malformed token strings, or a token type brokerlink cannot present.
    Messages name the field, never its value.
    """
    name = profile.name
    if not isinstance(token, dict):
        raise BrokerError(UNEXPECTED, f"{name} answered the token request with something that is not a JSON object.")
    clean = dict(token)
    _tokens_check(name, token)
    clean["token_type"] = _token_type_checked(name, token.get("token_type"))
    notes = _lifetimes_clean(name, token, clean) + _scope_clean(name, token, clean)
    for note in notes:
        logger.warning("connections.token.cleaned", extra={"broker": profile.slug, "note": note})
    return clean, notes


@sensitive_variables()
def _tokens_check(name: str, token: dict) -> None:
    """Raise BrokerError(UNEXPECTED) unless the access token, and the refresh token if any, can be used."""
    access = token.get("access_token")
    if not isinstance(access, str) or not TOKEN_PATTERN.fullmatch(access):
        raise BrokerError(
            UNEXPECTED,
            f"{name} sent an access token brokerlink cannot use (empty, too long or with invalid characters).",
        )
    refresh = token.get("refresh_token")
    if refresh not in (None, "") and (not isinstance(refresh, str) or not TOKEN_PATTERN.fullmatch(refresh)):
        raise BrokerError(
            UNEXPECTED, f"{name} sent a refresh token brokerlink cannot use (too long or with invalid characters)."
        )


def _token_type_checked(name: str, token_type) -> str:
    """The token type to store (Bearer, also when none was sent); BrokerError(UNEXPECTED) for any other."""
    if token_type in (None, ""):
        return BEARER
    if not isinstance(token_type, str) or not TOKEN_TYPE_PATTERN.fullmatch(token_type):
        raise BrokerError(UNEXPECTED, f"{name} sent a malformed token_type (control or invalid characters).")
    if token_type.lower() != "bearer":
        raise BrokerError(UNEXPECTED, f'{name} issued a "{token_type}" token; brokerlink can only use Bearer tokens.')
    return BEARER


def _lifetimes_clean(name: str, token: dict, clean: dict) -> list[str]:
    """Drop unusable lifetimes from `clean`; the notes saying so."""
    notes = []
    for field in ("expires_in", "refresh_token_expires_in"):
        if field in token and token[field] not in (None, "") and _lifetime(token[field]) is None:
            clean.pop(field)
            notes.append(f"{name} sent an unusable {field}; brokerlink assumed the documented lifetime instead.")
    return notes


def _scope_clean(name: str, token: dict, clean: dict) -> list[str]:
    """Make `clean`'s scope one string (a list of strings is joined) or drop it when it is not
    readable text; the notes saying so."""
    notes = []
    scope = token.get("scope")
    if isinstance(scope, list) and all(isinstance(item, str) for item in scope):
        clean["scope"] = " ".join(scope)
    elif scope is not None and not isinstance(scope, str):
        clean.pop("scope")
        notes.append(f"{name} sent a scope that is not text; it was ignored.")
    if isinstance(clean.get("scope"), str) and (len(clean["scope"]) > 2000 or not clean["scope"].isprintable()):
        clean.pop("scope")
        notes.append(f"{name} sent an unreadable scope; it was ignored.")
    return notes


def token_meta_for(profile: BrokerProfile, token: dict) -> dict:
    """The profile hook's non-secret values from a token answer; a value the hook refuses
    (TokenAnswerRejected) becomes BrokerError(UNEXPECTED), which fails this connect or refresh alone."""
    try:
        return profile.hooks.token_meta(token)
    except TokenAnswerRejected as exc:
        raise BrokerError(UNEXPECTED, str(exc)) from exc


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
    token, _ = token_response_clean(profile, token)
    connection.access_token = token["access_token"]
    if token.get("refresh_token"):
        connection.refresh_token = token["refresh_token"]
    elif first_grant:
        connection.refresh_token = ""
    connection.token_type = token["token_type"]
    if token.get("scope"):
        connection.scope = str(token["scope"])
    if first_grant or connection.grant_started_at is None:
        connection.grant_started_at = now

    expires_in = _lifetime(token.get("expires_in"))
    ttl_expiry = now + timedelta(seconds=expires_in) if expires_in else None
    if ttl_expiry is None and rules.access_ttl:
        ttl_expiry = now + timedelta(seconds=rules.access_ttl)
    cap = connection.grant_started_at + timedelta(seconds=rules.absolute_cap) if rules.absolute_cap else None
    daily = next_daily_expiry(rules, now=now)
    connection.access_expires_at = _min(ttl_expiry, daily, cap)

    if connection.refresh_token_sealed:
        refresh_in = _lifetime(token.get("refresh_token_expires_in"))
        refresh_ttl_expiry = None
        if refresh_in:
            refresh_ttl_expiry = now + timedelta(seconds=refresh_in)
        elif rules.refresh_ttl:
            refresh_ttl_expiry = now + timedelta(seconds=rules.refresh_ttl)
        connection.refresh_expires_at = _min(refresh_ttl_expiry, cap)
    else:
        connection.refresh_expires_at = None
    # Without a refresh token the access token's expiry is when the user must log in again.
    connection.reauth_deadline_at = _min(cap, None if connection.refresh_token_sealed else connection.access_expires_at)
    connection.last_refreshed_at = now
    meta = dict(connection.token_meta or {})
    meta.update(token_meta_for(profile, token))
    connection.token_meta = meta


def refresh_claim_clear(connection: Connection) -> None:
    """Forget any refresh of this grant still out (its claim and its unknown outcome): the grant
    is being replaced or wiped, and engine.refresh stores an answer only while its claim holds or
    the refresh token it spent is still stored. The caller saves the row."""
    connection.refresh_claim_owner, connection.refresh_claim_until = "", None
    connection.refresh_sent_at, connection.refresh_later_answer_at = None, None

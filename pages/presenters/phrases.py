"""The vocabulary and the phrases: every word a person reads about a connection's state, times
and tokens ("2 min ago", "refreshes in 12 min"), the same on every page, email and the admin.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from brokers.registry import UnknownBroker, get_profile
from common.timephrases import ago_phrase, duration_phrase
from connections import errors
from connections.models import Connection, ConnectionStatus

# The vocabulary (docs/pages.md, "Glossary"): every badge, card, history line, email and the
# admin use these words. key -> (badge label, summary group).
STATES = {
    "connected": ("Connected", "working"),
    "slow": ("Slow", "working"),
    "checking": ("Checking", "checking"),
    "retrying": ("Retrying", "waiting"),
    "retrying_slowly": ("Retrying slowly", "waiting"),
    "rate_limited": ("Rate limited", "waiting"),
    "waiting": ("Waiting for the broker", "waiting"),
    "needs_admin": ("Needs an administrator", "waiting"),
    "needs_you": ("Needs you", "needs_you"),
    "disconnected": ("Disconnected", "disconnected"),
}
# The summary strip's tiles, in order: (group, label). Every connection shown is in exactly one.
GROUPS = [
    ("working", "working"),
    ("checking", "checking"),
    ("waiting", "waiting, nothing to do"),
    ("needs_you", "need you"),
]
# Status words for history lines (event.to_status) in the same vocabulary.
STATUS_WORDS = {
    ConnectionStatus.PENDING: "Checking",
    ConnectionStatus.CONNECTED: "Connected",
    ConnectionStatus.CHECKING: "Checking",
    ConnectionStatus.DEGRADED: "Retrying",
    ConnectionStatus.BROKER_OUTAGE: "Waiting for the broker",
    ConnectionStatus.NEEDS_REAUTH: "Needs you",
    ConnectionStatus.FAILED: "Needs you",
    ConnectionStatus.DISCONNECTED: "Disconnected",
}
CATEGORY_WORDS = {
    errors.NETWORK: "Broker unreachable",
    errors.BROKER_FAULT: "Broker error",
    errors.RATE_LIMITED: "Rate limited",
    errors.AUTH: "Sign-in no longer accepted",
    errors.CONFIGURATION: "App credentials rejected",
    errors.UNEXPECTED: "Unreadable answer",
}
# OAuth / internal codes in parentheses ("(invalid_grant)", "(needs_reauth)") stay in the admin
# log; people read the sentence without them.
_CODE = re.compile(r"\s*\((?:[a-z]+_[a-z_]+|[a-z_]*error[a-z_]*)\)")


def plain(message: str) -> str:
    """A stored message without protocol codes, for people."""
    return _CODE.sub("", message or "").strip()


# --- phrases --------------------------------------------------------------------------


def until_phrase(moment: datetime, *, now: datetime) -> str:
    delta = (moment - now).total_seconds()
    if delta <= 0:
        return "now" if delta > -5 else f"{duration_phrase(delta)} ago"
    return f"in {duration_phrase(delta)}"


def last_success_phrase(connection: Connection, *, now: datetime) -> str:
    if connection.last_success_at is None:
        return "no successful check yet"
    return f"last successful check {ago_phrase(connection.last_success_at, now=now)}"


def has_live_token(connection: Connection, *, now: datetime) -> bool:
    """Tokens brokerlink can still use: not for a connection that needs the person to sign in
    again (the broker refused the grant) or that was disconnected."""
    if connection.status in (ConnectionStatus.DISCONNECTED, ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED):
        return False
    access_ok = bool(connection.access_token_sealed) and (
        connection.access_expires_at is None or connection.access_expires_at > now
    )
    return access_ok or bool(connection.refresh_token_sealed)


def token_phrase(connection: Connection, *, now: datetime) -> str:
    """What happens next to the tokens; empty when there are no live tokens to talk about."""
    return token_parts(connection, now=now)[0]


def refresh_planned_at(connection: Connection, *, profile=None) -> datetime | None:
    """When the engine refreshes the access token: its refresh margin before expiry
    (engine.refresh.refresh_due), not the expiry itself."""
    expires = connection.access_expires_at
    if expires is None:
        return None
    if profile is None:
        try:
            profile = get_profile(connection.broker_slug)
        except UnknownBroker:
            return expires
    issued = connection.last_refreshed_at or connection.grant_started_at
    lifetime = (expires - issued).total_seconds() if issued else None
    return expires - timedelta(seconds=profile.refresh_margin(lifetime))


def token_parts(connection: Connection, *, now: datetime, profile=None) -> tuple[str, datetime | None, str]:
    """(the token phrase, the moment it counts to, the words for that moment)."""
    if not has_live_token(connection, now=now):
        return "", None, ""
    deadline = connection.reauth_deadline_at
    if deadline is not None:
        if deadline <= now:
            return "reconnect needed now", None, ""
        when = until_phrase(deadline, now=now)
        return f"reconnect needed {when}", deadline, when
    expires = connection.access_expires_at
    if expires is None:
        return "token does not expire", None, ""
    if connection.refresh_token_sealed:
        if connection.refresh_expires_at is not None and connection.refresh_expires_at <= expires:
            when = until_phrase(connection.refresh_expires_at, now=now)
            return f"reconnect needed {when}", connection.refresh_expires_at, when
        planned = refresh_planned_at(connection, profile=profile) or expires
        if planned <= now:
            return "refreshing now", None, ""
        when = until_phrase(planned, now=now)
        return f"refreshes {when}", planned, when
    if expires > now:
        when = until_phrase(expires, now=now)
        return f"reconnect needed {when}", expires, when
    return "reconnect needed now", None, ""


def clock_phrase(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%H:%M:%S}"


def latency_phrase(latency_ms: int | None) -> str:
    return f"{latency_ms} ms" if latency_ms is not None else "—"


def timed_html(text: str, times) -> SafeString:
    """`text` with each (phrase, moment, kind) of `times` as a <time> element. kind is "ago",
    "until", "countdown" (an "until" the browser counts down, static/js/live.js) or "clock": the
    moment stays machine-readable beside the words written for it."""
    out, rest = [], text
    for phrase, moment, kind in times:
        if not phrase or moment is None or phrase not in rest:
            continue
        before, rest = rest.split(phrase, 1)
        countdown = " data-countdown" if kind == "countdown" else ""
        out.append(
            format_html(
                '{}<time datetime="{}" data-rel="{}"{}>{}</time>',
                before,
                moment.isoformat(),
                kind,
                SafeString(countdown),
                phrase,
            )
        )
    out.append(format_html("{}", rest))
    return SafeString("".join(out))

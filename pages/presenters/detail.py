"""The connection detail page: uptimes, charts, the history timeline and the token lines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.safestring import SafeString

from connections.models import Connection, ConnectionEvent, ConnectionStatus
from engine.monitoring import MonitoringView, monitoring_status
from pages import charts, selectors
from pages.presenters.cards import ConnectionView, ProfileCache, card_for
from pages.presenters.phrases import STATUS_WORDS, has_live_token, plain, until_phrase

# Below this many checks an uptime is given as "n of m checks passed", not as a percentage.
UPTIME_MIN_CHECKS = 20
UPTIME_WINDOWS = [
    ("24h", "24 h", 24),
    ("7d", "7 days", 24 * 7),
    ("30d", "30 days", 24 * 30),
    ("1y", "1 year", 24 * 365),
]


def uptime_phrase(passed: int, checks: int) -> str:
    if not checks:
        return "no checks yet"
    if checks < UPTIME_MIN_CHECKS:
        return f"{passed} of {checks} checks passed"
    share = 100 * passed / checks
    figure = f"{share:.2f}".rstrip("0").rstrip(".") if share < 100 else "100"
    return f"{figure}% of {checks:,} checks"


def hourly_buckets(connection: Connection, *, hours: int = 24, now: datetime) -> list[tuple[datetime, int, int]]:
    return selectors.connection_hourly_checks(connection, hours=hours, now=now)


@dataclass
class EventView:
    kind: str
    kind_label: str
    created_at: datetime
    to_status: str
    status_word: str
    message: str


EVENT_WORDS = {
    ConnectionEvent.Kind.CONNECTED: "Connected",
    ConnectionEvent.Kind.RECONNECTED: "Reconnected",
    ConnectionEvent.Kind.STATUS_CHANGED: "State changed",
    ConnectionEvent.Kind.REFRESHED: "Tokens refreshed",
    ConnectionEvent.Kind.REFRESH_FAILED: "Token refresh failed",
    ConnectionEvent.Kind.CHECK_FAILED: "Check failed",
    ConnectionEvent.Kind.REVOKED: "Revoked at the broker",
    ConnectionEvent.Kind.REVOCATION_FAILED: "Revocation not confirmed",
    ConnectionEvent.Kind.DISCONNECTED: "Disconnected",
    ConnectionEvent.Kind.ADMIN_ACTION: "Administrator action",
    ConnectionEvent.Kind.NOTIFIED: "Email sent",
}
EMAIL_WORDS = {
    "needs_reauth": "Reconnect needed.",
    "failed": "Connection stopped.",
    "recovered": "Working again.",
    "expiry_warning": "Sign-in due soon.",
    "broker_outage": "The broker is having an outage.",
    "outage_over": "The broker's outage is over.",
}


def event_view(event: ConnectionEvent) -> EventView:
    message = plain(event.message)
    if event.kind == ConnectionEvent.Kind.NOTIFIED:
        # "Notification sent (email, ntfy): recovered." (engine.notifications), or older "Email sent: recovered."
        code = event.message.rpartition(": ")[2].rstrip(".")
        message = EMAIL_WORDS.get(code, "")
    return EventView(
        kind=event.kind,
        kind_label=EVENT_WORDS.get(event.kind, event.get_kind_display()),
        created_at=event.created_at,
        to_status=event.to_status,
        status_word=STATUS_WORDS.get(event.to_status, "") if event.to_status else "",
        message=message,
    )


def events_view(events) -> list[EventView]:
    """The timeline, newest first: a "Check now" (into *Checking* and out of it again) is one
    row with the status it ended in, not two."""
    events = list(events)
    out = []
    skip = False
    for newer, older in zip(events, [*events[1:], None], strict=False):
        if skip:
            skip = False
            continue
        view = event_view(newer)
        if (
            older is not None
            and older.to_status == ConnectionStatus.CHECKING
            and newer.from_status == ConnectionStatus.CHECKING
            and newer.to_status != ConnectionStatus.CHECKING
        ):
            view.kind_label = "Checked on request"
            skip = True
        out.append(view)
    return out


@dataclass
class DetailView:
    card: ConnectionView
    events: list[EventView]
    latency_svg: SafeString
    uptime_svg: SafeString
    uptimes: list[tuple[str, str, str]]
    access_expires_text: str
    refresh_expires_text: str
    deadline_text: str
    monitoring: MonitoringView
    health: object = None  # engine.health.HealthReport

    @property
    def uptime_24h(self) -> str:
        return self.uptimes[0][2]

    @property
    def uptime_30d(self) -> str:
        return self.uptimes[2][2]


def _expiry(moment: datetime | None, *, now: datetime, none: str) -> str:
    if moment is None:
        return none
    verb = "expires" if moment > now else "expired"
    return f"{verb} {until_phrase(moment, now=now)} ({timezone.localtime(moment):%Y-%m-%d %H:%M %Z})"


def detail_for(connection: Connection, *, now: datetime | None = None, events: int = 30) -> DetailView:
    now = now or timezone.now()
    selectors.connection_check_log_load(connection)  # one read for the card, charts, uptime and health
    card = card_for(connection, now=now)
    recent = selectors.connection_recent_checks(connection, limit=60)
    live_tokens = has_live_token(connection, now=now)
    counts = selectors.connection_uptime_windows(connection, hours=[h for _, _, h in UPTIME_WINDOWS], now=now)
    uptimes = [
        (key, label, uptime_phrase(passed, total))
        for (key, label, _), (passed, total) in zip(UPTIME_WINDOWS, counts, strict=True)
    ]
    health = None
    profile = ProfileCache()[connection.broker_slug]
    if profile is not None and connection.status != ConnectionStatus.DISCONNECTED:
        from engine.health import health_explain

        health = health_explain(connection, baseline_ms=profile.baseline_latency_ms, now=now)
    return DetailView(
        card=card,
        events=events_view(connection.events.order_by("-created_at", "-id")[:events]),
        latency_svg=charts.latency_chart([(c.checked_at, c.latency_ms, c.ok) for c in recent]),
        uptime_svg=charts.uptime_chart(hourly_buckets(connection, now=now)),
        uptimes=uptimes,
        # Token lines only for tokens brokerlink can still use.
        access_expires_text=_expiry(connection.access_expires_at, now=now, none="does not expire")
        if live_tokens
        else "",
        refresh_expires_text=(
            _expiry(connection.refresh_expires_at, now=now, none="no fixed expiry")
            if live_tokens and connection.refresh_token_sealed
            else ""
        ),
        deadline_text=_expiry(connection.reauth_deadline_at, now=now, none="") if live_tokens else "",
        monitoring=monitoring_status(now=now),
        health=health,
    )

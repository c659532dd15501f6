"""View-models for the connection pages: every phrase a person reads is decided here
("last successful check 2 min ago", "refreshes in 12 min", "retrying 2 of 5 in 40 s"),
so templates only lay them out and tests can check the words without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Prefetch, Q
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.safestring import SafeString

from brokers.registry import UnknownBroker, get_profile
from connections import charts, errors, hub
from connections.models import CheckResult, Connection, ConnectionEvent, ConnectionStatus, ErrorCategory, Quality
from connections.selectors import connection_list_for_user
from connections.state import INACTIVE_STATUSES

UPTIME_SLOTS = 30
HEALTHY = {ConnectionStatus.CONNECTED, ConnectionStatus.CHECKING, ConnectionStatus.PENDING}
ATTENTION = {ConnectionStatus.DEGRADED, ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED}
# A connection whose grant ends this soon offers "Reconnect" before it breaks.
RECONNECT_AHEAD = timedelta(days=3)
# Monitoring counts as stopped after this many missed sweep cycles.
STALE_CYCLES = 3

STATUS_HELP = {
    ConnectionStatus.PENDING: "Connecting: waiting for the first check.",
    ConnectionStatus.CONNECTED: "Connected: the last check passed.",
    ConnectionStatus.CHECKING: "Checking the connection now…",
    ConnectionStatus.DEGRADED: "Degraded: the last check failed; brokerlink is retrying.",
    ConnectionStatus.BROKER_OUTAGE: "Broker outage: the broker is failing for everyone; brokerlink waits for it.",
    ConnectionStatus.NEEDS_REAUTH: "Needs re-authentication: reconnect to keep using this account.",
    ConnectionStatus.FAILED: "Failed: brokerlink gave up retrying. Reconnect to try again.",
    ConnectionStatus.DISCONNECTED: "Disconnected: brokerlink holds no tokens for this account.",
}


# --- phrases --------------------------------------------------------------------------


def duration_phrase(seconds: float) -> str:
    """40 s, 12 min, 5 h, 2 days: the largest unit that reads naturally, rounded down."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    days = seconds // 86400
    return f"{days} days"


def ago_phrase(moment: datetime | None, *, now: datetime) -> str:
    if moment is None:
        return "never"
    delta = (now - moment).total_seconds()
    if delta < 5:
        return "just now"
    return f"{duration_phrase(delta)} ago"


def until_phrase(moment: datetime, *, now: datetime) -> str:
    delta = (moment - now).total_seconds()
    if delta <= 0:
        return "now" if delta > -5 else f"{duration_phrase(delta)} ago"
    return f"in {duration_phrase(delta)}"


def last_success_phrase(connection: Connection, *, now: datetime) -> str:
    if connection.last_success_at is None:
        return "no successful check yet"
    return f"last successful check {ago_phrase(connection.last_success_at, now=now)}"


def token_phrase(connection: Connection, *, now: datetime) -> str:
    """What happens next to the tokens, in the words of the person who has to act (or not)."""
    if connection.status == ConnectionStatus.DISCONNECTED:
        return "no tokens held"
    if connection.status == ConnectionStatus.NEEDS_REAUTH:
        return "reconnect needed now"
    deadline = connection.reauth_deadline_at
    if deadline is not None:
        if deadline <= now:
            return "reconnect needed now"
        return f"reconnect needed {until_phrase(deadline, now=now)}"
    expires = connection.access_expires_at
    if expires is None:
        return "token does not expire"
    if connection.refresh_token_sealed:
        if connection.refresh_expires_at is not None and connection.refresh_expires_at <= expires:
            return f"reconnect needed {until_phrase(connection.refresh_expires_at, now=now)}"
        if expires <= now:
            return "refreshing now"
        return f"refreshes {until_phrase(expires, now=now)}"
    return f"reconnect needed {until_phrase(expires, now=now)}" if expires > now else "reconnect needed now"


def retry_phrase(connection: Connection, *, max_attempts: int | None, now: datetime) -> str:
    if connection.retry_attempt <= 0 or connection.status in INACTIVE_STATUSES:
        return ""
    of = f" of {max_attempts}" if max_attempts else ""
    wait = (connection.next_check_at - now).total_seconds()
    when = f"in {duration_phrase(wait)}" if wait >= 1 else "now"
    return f"retrying {connection.retry_attempt}{of} {when}"


def latency_phrase(latency_ms: int | None) -> str:
    return f"{latency_ms} ms" if latency_ms is not None else "—"


def percent_phrase(share: float | None) -> str:
    if share is None:
        return "no data"
    return f"{100 * share:.2f}%".replace(".00%", "%")


# --- monitoring (is the sweep running?) -----------------------------------------------


@dataclass
class MonitoringView:
    active: bool
    last_run_at: datetime | None
    text: str


def sweep_interval_seconds() -> int:
    return int(getattr(settings, "HEARTBEAT_INTERVAL_SECONDS", 60))


def monitoring_last_run() -> datetime | None:
    """The last sweep start (the engine's SweepRun), else the beat's last sign of life."""
    try:
        from connections.engine.models import SweepRun

        last = SweepRun.objects.order_by("-started_at").values_list("started_at", flat=True).first()
        if last is not None:
            return last
    except ImportError:  # engine not installed in this build
        pass
    return hub.ask("beat_last_seen")  # ops records beat's liveness and answers through the hub


def monitoring_status(*, now: datetime | None = None) -> MonitoringView:
    now = now or timezone.now()
    last = monitoring_last_run()
    limit = timedelta(seconds=STALE_CYCLES * sweep_interval_seconds())
    if last is None:
        return MonitoringView(False, None, "Monitoring has not run yet: statuses below are not live checks.")
    if now - last > limit:
        text = (
            f"Monitoring is not running: the last check round was {ago_phrase(last, now=now)} "
            f"({timezone.localtime(last):%Y-%m-%d %H:%M %Z}). Statuses below are as of then."
        )
        return MonitoringView(False, last, text)
    return MonitoringView(True, last, f"Monitoring is active: last check round {ago_phrase(last, now=now)}.")


# --- connection cards -----------------------------------------------------------------


@dataclass
class ErrorView:
    category: str
    category_label: str
    message: str
    meaning: str
    next_step: str


@dataclass
class ConnectionView:
    connection: Connection
    pk: str
    broker_name: str
    mark: str
    account: str
    label: str
    environment: str
    environment_label: str
    status: str
    status_label: str
    status_help: str
    health_score: int | None
    quality: str
    quality_label: str
    latency_text: str
    last_success_text: str
    token_text: str
    retry_text: str
    uptime_svg: SafeString
    needs_reconnect: bool
    can_check: bool
    is_final: bool
    error: ErrorView | None
    manual_revoke_url: str = ""
    disconnect_result: dict | None = None
    last_success_ago: str = ""
    nickname: str = ""
    revoke_pending: bool = False

    @property
    def name(self) -> str:
        """What the person calls the account: their nickname, else the broker's label, else its number."""
        return self.nickname or self.label or self.account

    @property
    def title(self) -> str:
        return f"{self.name} at {self.broker_name}"


class ProfileCache(dict):
    """get_profile once per broker slug per page (custom brokers may read the database)."""

    def __missing__(self, slug: str):
        try:
            profile = get_profile(slug)
        except UnknownBroker:
            profile = None
        self[slug] = profile
        return profile


def error_view(connection: Connection) -> ErrorView | None:
    category = connection.last_error_category
    if not category or connection.status in (ConnectionStatus.CONNECTED, ConnectionStatus.DISCONNECTED):
        return None
    return ErrorView(
        category=category,
        category_label=ErrorCategory(category).label if category in ErrorCategory.values else category,
        message=connection.last_error_message,
        meaning=errors.MEANING.get(category, ""),
        next_step=errors.NEXT_STEP.get(category, ""),
    )


def _label(connection: Connection) -> str:
    """The account's own label, unless it only repeats the masked number shown beside it."""
    label = connection.account_label.strip()
    masked = connection.account_number_masked
    if masked and label.endswith(masked):
        label = label[: -len(masked)].strip()
    return label


def present_connection(
    connection: Connection, *, checks, now: datetime, profiles: ProfileCache | None = None
) -> ConnectionView:
    profiles = profiles if profiles is not None else ProfileCache()
    profile = profiles[connection.broker_slug]
    status = connection.status
    deadline = connection.reauth_deadline_at
    needs_reconnect = status in (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED) or (
        deadline is not None and status != ConnectionStatus.DISCONNECTED and deadline - now < RECONNECT_AHEAD
    )
    quality = connection.quality or ""
    return ConnectionView(
        connection=connection,
        pk=str(connection.pk),
        broker_name=profile.name if profile else connection.broker_slug,
        mark=(profile.mark if profile and profile.mark else connection.broker_slug[:2]).upper(),
        account=connection.account_number_masked or connection.account_id,
        label=_label(connection),
        environment=connection.environment,
        environment_label=connection.get_environment_display(),
        status=status,
        status_label=connection.get_status_display(),
        status_help=STATUS_HELP.get(status, ""),
        health_score=connection.health_score,
        quality=quality,
        quality_label=Quality(quality).label if quality in Quality.values else "not scored yet",
        latency_text=latency_phrase(connection.last_latency_ms),
        last_success_text=last_success_phrase(connection, now=now),
        token_text=token_phrase(connection, now=now),
        retry_text=retry_phrase(connection, max_attempts=profile.backoff.max_attempts if profile else None, now=now),
        uptime_svg=charts.uptime_bar(checks, slots=UPTIME_SLOTS),
        needs_reconnect=needs_reconnect,
        can_check=status not in INACTIVE_STATUSES,
        is_final=status == ConnectionStatus.DISCONNECTED,
        error=error_view(connection),
        manual_revoke_url=getattr(profile, "manual_revoke_url", "") or "",
        last_success_ago=ago_phrase(connection.last_success_at, now=now) if connection.last_success_at else "never",
        nickname=connection.nickname,
        revoke_pending=bool(connection.revoke_pending_sealed),
    )


def recent_checks_prefetch() -> Prefetch:
    # A sliced Prefetch is one windowed query for all connections, not one per card.
    return Prefetch(
        "checks", queryset=CheckResult.objects.order_by("-checked_at")[:UPTIME_SLOTS], to_attr="recent_checks"
    )


@dataclass
class Summary:
    healthy: int = 0
    attention: int = 0
    outage: int = 0
    total: int = 0


def summary_for(views: list[ConnectionView]) -> Summary:
    summary = Summary(total=len(views))
    for view in views:
        if view.status in HEALTHY:
            summary.healthy += 1
        elif view.status == ConnectionStatus.BROKER_OUTAGE:
            summary.outage += 1
        elif view.status in ATTENTION:
            summary.attention += 1
    return summary


@dataclass
class Dashboard:
    cards: list[ConnectionView]
    summary: Summary
    monitoring: MonitoringView
    now: datetime = field(default_factory=timezone.now)


def dashboard_for_user(*, user, now: datetime | None = None) -> Dashboard:
    """Everything the dashboard shows, in a fixed number of queries whatever the number of connections."""
    now = now or timezone.now()
    connections = list(connection_list_for_user(user=user).prefetch_related(recent_checks_prefetch()))
    profiles = ProfileCache()
    cards = [present_connection(c, checks=c.recent_checks, now=now, profiles=profiles) for c in connections]
    return Dashboard(cards=cards, summary=summary_for(cards), monitoring=monitoring_status(now=now), now=now)


def summary_for_user(*, user) -> Summary:
    statuses = connection_list_for_user(user=user).values_list("status", flat=True)
    summary = Summary()
    for status in statuses:
        summary.total += 1
        if status in HEALTHY:
            summary.healthy += 1
        elif status == ConnectionStatus.BROKER_OUTAGE:
            summary.outage += 1
        elif status in ATTENTION:
            summary.attention += 1
    return summary


def card_for(connection: Connection, *, now: datetime | None = None) -> ConnectionView:
    now = now or timezone.now()
    checks = list(connection.checks.order_by("-checked_at")[:UPTIME_SLOTS])
    view = present_connection(connection, checks=checks, now=now)
    if view.is_final:
        view.disconnect_result = disconnect_result(connection)
    return view


def disconnect_result(connection: Connection) -> dict | None:
    """The outcome of the disconnect, from the history: revoked at the broker, or not (and why)."""
    event = (
        connection.events.filter(kind__in=[ConnectionEvent.Kind.REVOKED, ConnectionEvent.Kind.REVOCATION_FAILED])
        .order_by("-created_at", "-id")
        .first()
    )
    if event is None:
        return None
    return {"revoked": event.kind == ConnectionEvent.Kind.REVOKED, "message": event.message, "at": event.created_at}


# --- detail ---------------------------------------------------------------------------


def _uptime(connection: Connection, *, hours: int, now: datetime) -> float | None:
    try:
        from connections.engine.health import connection_uptime
    except ImportError:
        start = now - timedelta(hours=hours)
        agg = connection.checks.filter(checked_at__gte=start).aggregate(
            n=Count("id"), ok=Count("id", filter=Q(ok=True))
        )
        return agg["ok"] / agg["n"] if agg["n"] else None
    return connection_uptime(connection, hours=hours, now=now)


def hourly_buckets(connection: Connection, *, hours: int = 24, now: datetime) -> list[tuple[datetime, int, int]]:
    """(hour, checks, successes) for each of the last `hours` hours, oldest first, empty hours included."""
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    rows = (
        connection.checks.filter(checked_at__gte=start)
        .annotate(hour=TruncHour("checked_at"))
        .values("hour")
        .annotate(n=Count("id"), ok=Count("id", filter=Q(ok=True)))
    )
    by_hour = {row["hour"]: (row["n"], row["ok"]) for row in rows}
    out = []
    for i in range(hours):
        hour = start + timedelta(hours=i)
        n, ok = by_hour.get(hour, (0, 0))
        out.append((hour, n, ok))
    return out


@dataclass
class DetailView:
    card: ConnectionView
    events: list[ConnectionEvent]
    latency_svg: SafeString
    uptime_svg: SafeString
    uptime_24h: str
    uptime_30d: str
    access_expires_text: str
    refresh_expires_text: str
    deadline_text: str
    monitoring: MonitoringView


def _expiry(moment: datetime | None, *, now: datetime, none: str) -> str:
    if moment is None:
        return none
    verb = "expires" if moment > now else "expired"
    return f"{verb} {until_phrase(moment, now=now)} ({timezone.localtime(moment):%Y-%m-%d %H:%M %Z})"


def detail_for(connection: Connection, *, now: datetime | None = None, events: int = 30) -> DetailView:
    now = now or timezone.now()
    card = card_for(connection, now=now)
    recent = list(connection.checks.order_by("-checked_at")[:60])[::-1]
    has_tokens = connection.status != ConnectionStatus.DISCONNECTED
    return DetailView(
        card=card,
        events=list(connection.events.select_related(None).order_by("-created_at", "-id")[:events]),
        latency_svg=charts.latency_chart([(c.checked_at, c.latency_ms if c.ok else None) for c in recent]),
        uptime_svg=charts.uptime_chart(hourly_buckets(connection, now=now)),
        uptime_24h=percent_phrase(_uptime(connection, hours=24, now=now)),
        uptime_30d=percent_phrase(_uptime(connection, hours=24 * 30, now=now)),
        access_expires_text=_expiry(connection.access_expires_at, now=now, none="does not expire")
        if has_tokens
        else "deleted",
        refresh_expires_text=(
            _expiry(connection.refresh_expires_at, now=now, none="no fixed expiry")
            if connection.refresh_token_sealed
            else "none held"
        ),
        deadline_text=_expiry(connection.reauth_deadline_at, now=now, none="") if has_tokens else "",
        monitoring=monitoring_status(now=now),
    )

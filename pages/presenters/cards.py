"""The connection card's view-model (dashboard, live updates, disconnected list)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.safestring import SafeString

from brokers.registry import UnknownBroker, get_profile
from connections import display, errors
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.state import INACTIVE_STATUSES
from engine.models import Quality
from engine.monitoring import monitoring_last_run
from pages import charts, selectors
from pages.presenters.phrases import (
    CATEGORY_WORDS,
    ago_phrase,
    last_success_phrase,
    latency_phrase,
    plain,
    timed_html,
    token_parts,
)
from pages.presenters.status import StatusView, last_check_passed, status_for

UPTIME_SLOTS = 30
# A connection whose grant ends this soon offers "Reconnect" before it breaks.
RECONNECT_AHEAD = timedelta(days=3)


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
    state: StatusView
    health_score: int | None
    health_text: str
    quality: str
    quality_label: str
    latency_text: str
    last_success_text: str
    token_text: str
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
    token_at: datetime | None = None
    token_when: str = ""

    @property
    def last_success_html(self) -> SafeString:
        text = self.last_success_text[:1].upper() + self.last_success_text[1:]
        return timed_html(text, ((self.last_success_ago, self.connection.last_success_at, "ago"),))

    @property
    def token_html(self) -> SafeString:
        return timed_html(self.token_text, ((self.token_when, self.token_at, "until"),))

    @property
    def live_version(self) -> str:
        """What this card shows, as its page tells the next event stream (`data-live-version`,
        pages.live.Hub.resume): the stream sends it again if the connection changed since."""
        return display.seen_piece(self.pk, display.display_version(self.connection))

    @property
    def name(self) -> str:
        """What the person calls the account: their nickname, else the broker's label, else its number."""
        return self.nickname or self.label or self.account

    @property
    def title(self) -> str:
        return f"{self.name} at {self.broker_name}"

    # The badge and the live announcements follow the state, not the raw status column.
    @property
    def status(self) -> str:
        return self.state.key

    @property
    def status_label(self) -> str:
        return self.state.label

    @property
    def status_help(self) -> str:
        return self.state.sentence


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
    if not category or connection.status == ConnectionStatus.DISCONNECTED:
        return None
    if connection.status not in (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED) and last_check_passed(
        connection
    ):
        return None  # an old problem, already solved
    return ErrorView(
        category=category,
        category_label=CATEGORY_WORDS.get(category, "Problem"),
        message=plain(connection.last_error_message),
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


# The engine caps the score of a connection that needs you (engine/health.py); such a
# connection is no longer checked, so its stored score is from before: capped when shown.
NEEDS_YOU_HEALTH_CAP = 20


def health_shown(connection: Connection) -> int | None:
    score = connection.health_score
    if score is not None and connection.status in (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED):
        return min(score, NEEDS_YOU_HEALTH_CAP)
    return score


def quality_shown(connection: Connection) -> str:
    """The quality band of the score shown ("" without a score)."""
    score = health_shown(connection)
    if score is None:
        return ""
    if score != connection.health_score:
        from engine.health import quality_for

        return quality_for(score)
    return connection.quality or ""


def health_phrase(connection: Connection) -> str:
    score = health_shown(connection)
    if score is None:
        if connection.status in (ConnectionStatus.DISCONNECTED,):
            return "—"
        return "not enough data yet"
    return f"{score}/100"


def present_connection(
    connection: Connection,
    *,
    checks,
    now: datetime,
    profiles: ProfileCache | None = None,
    last_sweep: datetime | None = None,
) -> ConnectionView:
    profiles = profiles if profiles is not None else ProfileCache()
    profile = profiles[connection.broker_slug]
    status = connection.status
    deadline = connection.reauth_deadline_at
    needs_reconnect = status in (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED) or (
        deadline is not None and status != ConnectionStatus.DISCONNECTED and deadline - now < RECONNECT_AHEAD
    )
    quality = quality_shown(connection)
    passed = last_check_passed(connection)
    token_text, token_at, token_when = token_parts(connection, now=now, profile=profile)
    return ConnectionView(
        connection=connection,
        pk=str(connection.pk),
        broker_name=profile.name if profile else connection.broker_slug,
        mark=(profile.mark if profile and profile.mark else connection.broker_slug[:2]).upper(),
        account=connection.account_number_masked or connection.account_id,
        label=_label(connection),
        environment=connection.environment,
        environment_label=connection.get_environment_display(),
        state=status_for(connection, profile=profile, now=now, last_sweep=last_sweep),
        health_score=health_shown(connection),
        health_text=health_phrase(connection),
        quality=quality,
        quality_label=Quality(quality).label if quality in Quality.values else "",
        # Latency only from a passed check: a failed one measured how fast the error came back.
        latency_text=latency_phrase(connection.last_latency_ms) if passed else "—",
        last_success_text=last_success_phrase(connection, now=now),
        token_text=token_text,
        token_at=token_at,
        token_when=token_when,
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


def recent_checks_attach(connections: list[Connection]) -> None:
    """Set `recent_checks` (newest first) on each connection from its check log: none more
    queries for connections loaded with `select_related("check_log")`, else one for all."""
    missing = [c.pk for c in connections if "check_log" not in c._state.fields_cache]
    rings = selectors.connection_check_logs(missing) if missing else {}
    for connection in connections:
        ring = rings.get(connection.pk) or selectors.connection_check_log(connection)
        connection.recent_checks = ring.recent(UPTIME_SLOTS)[::-1]


def card_for(connection: Connection, *, now: datetime | None = None) -> ConnectionView:
    now = now or timezone.now()
    checks = selectors.connection_recent_checks(connection, limit=UPTIME_SLOTS)[::-1]
    view = present_connection(connection, checks=checks, now=now, last_sweep=monitoring_last_run())
    if view.is_final:
        view.disconnect_result = disconnect_result(connection)
    return view


def cards_for_disconnected(connections: list[Connection], *, now: datetime, last_sweep=None) -> list[ConnectionView]:
    """Cards of disconnected connections (no uptime bar: they are no longer checked) with the
    outcome of each disconnect, in one query for all of them."""
    if not connections:
        return []
    latest: dict = {}
    outcomes = ConnectionEvent.objects.filter(
        connection__in=connections, kind__in=[ConnectionEvent.Kind.REVOKED, ConnectionEvent.Kind.REVOCATION_FAILED]
    ).order_by("connection_id", "-created_at", "-id")
    for event in outcomes:
        latest.setdefault(event.connection_id, event)
    profiles = ProfileCache()
    views = []
    for connection in connections:
        view = present_connection(connection, checks=[], now=now, profiles=profiles, last_sweep=last_sweep)
        view.disconnect_result = _outcome(latest.get(connection.pk))
        views.append(view)
    return views


def disconnect_result(connection: Connection) -> dict | None:
    """The outcome of the disconnect, from the history: revoked at the broker, or not (and why)."""
    event = (
        connection.events.filter(kind__in=[ConnectionEvent.Kind.REVOKED, ConnectionEvent.Kind.REVOCATION_FAILED])
        .order_by("-created_at", "-id")
        .first()
    )
    return _outcome(event)


def _outcome(event: ConnectionEvent | None) -> dict | None:
    if event is None:
        return None
    revoked = event.kind == ConnectionEvent.Kind.REVOKED
    message = plain(event.message)
    if not revoked:
        # The page leads with "Not revoked at <broker>."; the event's own "Not revoked: " would repeat it.
        message = message.removeprefix("Not revoked: ").removeprefix("Not revoked:").strip()
    return {"revoked": revoked, "message": message, "at": event.created_at}


# --- detail ---------------------------------------------------------------------------

"""View-models for the connection pages: every phrase a person reads is decided here
("last successful check 2 min ago", "refreshes in 12 min", "retrying 2 of 5 in 40 s"),
so templates only lay them out and tests can check the words without a browser.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from brokers.registry import UnknownBroker, get_profile
from connections import charts, errors, selectors
from connections.models import Connection, ConnectionEvent, ConnectionStatus, Quality
from connections.state import INACTIVE_STATUSES

UPTIME_SLOTS = 30
# A connection whose grant ends this soon offers "Reconnect" before it breaks.
RECONNECT_AHEAD = timedelta(days=3)
# Monitoring counts as stopped after this many missed sweep cycles.
STALE_CYCLES = 3
# An access token with less life than this is not used while its refresh runs (engine.check).
REFRESH_AWAITED_TOKEN_LIFE = timedelta(seconds=15)

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


def next_attempt_at(connection: Connection, *, last_sweep: datetime | None, now: datetime) -> datetime:
    """When brokerlink really checks next: the first sweep tick at or after next_check_at
    (a connection due at 12:00:05 is checked by the sweep that starts after it, not at 12:00:05)."""
    due = max(connection.next_check_at, now)
    if last_sweep is None:
        return due
    interval = timedelta(seconds=sweep_interval_seconds())
    if due <= last_sweep:
        return max(now, last_sweep + interval)
    ticks = math.ceil((due - last_sweep) / interval)
    return last_sweep + ticks * interval


def latency_phrase(latency_ms: int | None) -> str:
    return f"{latency_ms} ms" if latency_ms is not None else "—"


# --- monitoring (is the sweep running?) -----------------------------------------------


@dataclass
class MonitoringView:
    active: bool
    last_run_at: datetime | None
    text: str


def sweep_interval_seconds() -> int:
    return int(getattr(settings, "HEARTBEAT_INTERVAL_SECONDS", 60))


def monitoring_last_run() -> datetime | None:
    """The last check round's start (the engine's SweepRun: every beat tick writes one when a
    worker runs it). Beat alive with no worker checks nothing, so beat's own liveness is not
    an answer here (the system status page shows it as a service)."""
    from connections.engine.models import SweepRun

    return SweepRun.objects.order_by("-started_at").values_list("started_at", flat=True).first()


def monitoring_status(*, now: datetime | None = None, last: datetime | None = None) -> MonitoringView:
    now = now or timezone.now()
    last = last or monitoring_last_run()
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


# --- system status (staff) -------------------------------------------------------------


@dataclass
class SystemBadge:
    key: str  # healthy | degraded | down (CSS: badge--overall-<key>)
    label: str
    reasons: list[str]


def system_badge(*, services: str, alerts, breakers: list[dict], monitoring: MonitoringView) -> SystemBadge:
    """The staff page's one word, from the services, the open alerts, the brokers' circuits and
    the sweep together: "Healthy" only when none of them has anything to say."""
    reasons = []
    worst = "healthy"

    def worse(level: str, reason: str) -> None:
        nonlocal worst
        reasons.append(reason)
        if level == "down" or (level == "degraded" and worst == "healthy"):
            worst = level

    if services in ("down", "unknown"):
        worse("down", "a service is down" if services == "down" else "services could not be checked")
    elif services == "degraded":
        worse("degraded", "a service is degraded")
    critical = [a for a in alerts if a.severity == "critical"]
    warning = [a for a in alerts if a.severity != "critical"]
    if critical:
        worse("down", f"{len(critical)} critical alert{'s' if len(critical) != 1 else ''} open")
    if warning:
        worse("degraded", f"{len(warning)} warning{'s' if len(warning) != 1 else ''} open")
    open_circuits = [b["name"] for b in breakers if b.get("state_key") not in ("closed", None)]
    if open_circuits:
        worse("degraded", "waiting for " + ", ".join(open_circuits) + " (circuit open)")
    if not monitoring.active:
        worse("degraded", "monitoring is not running")
    label = {"healthy": "Healthy", "degraded": "Degraded", "down": "Critical"}[worst]
    return SystemBadge(worst, label, reasons)


# --- connection cards -----------------------------------------------------------------


@dataclass
class ErrorView:
    category: str
    category_label: str
    message: str
    meaning: str
    next_step: str


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


@dataclass
class StatusView:
    """What a person reads about a connection's state: the badge, one sentence, and (when
    brokerlink will try again) the time of the next attempt."""

    key: str
    label: str
    sentence: str
    group: str
    next_at: datetime | None = None
    next_text: str = ""
    # (phrase, moment, kind) of every time the sentence mentions; see timed_html.
    times: tuple = ()

    @property
    def sentence_html(self) -> SafeString:
        """The sentence with its "in 40 s" as a live countdown (static/js/live.js)."""
        return timed_html(self.sentence, self.times)


def _state(key: str, sentence: str, **kw) -> StatusView:
    label, group = STATES[key]
    return StatusView(key=key, label=label, sentence=sentence, group=group, **kw)


def checked_this_grant(connection: Connection) -> bool:
    last = connection.last_check_at
    return last is not None and (connection.grant_started_at is None or last >= connection.grant_started_at)


def last_check_passed(connection: Connection) -> bool:
    return (
        checked_this_grant(connection)
        and connection.last_success_at is not None
        and connection.last_success_at >= connection.last_check_at
    )


def is_slow(connection: Connection, profile) -> bool:
    from connections.engine.conf import engine_setting

    if profile is None or connection.last_latency_ms is None:
        return False
    return connection.last_latency_ms > float(engine_setting("SLOW_FACTOR")) * max(1, profile.baseline_latency_ms)


def refresh_awaited(connection: Connection, *, now: datetime) -> bool:
    """A refresh went out and is not answered (running, or its outcome unknown) while the
    access token has run out: the connection waits for the broker (engine.refresh)."""
    return (
        connection.refresh_sent_at is not None
        and connection.access_expires_at is not None
        and connection.access_expires_at <= now + REFRESH_AWAITED_TOKEN_LIFE
    )


def status_for(connection: Connection, *, profile, now: datetime, last_sweep: datetime | None = None) -> StatusView:
    """The one place that turns a connection's data into its state words."""
    from connections.engine.conf import engine_setting

    name = profile.name if profile else "The broker"
    status = connection.status
    if status == ConnectionStatus.DISCONNECTED:
        return _state("disconnected", "brokerlink holds no tokens for this account and no longer checks it.")
    if status == ConnectionStatus.NEEDS_REAUTH:
        return _state("needs_you", f"{name} no longer accepts this connection's sign-in. Reconnect to keep using it.")
    if status == ConnectionStatus.FAILED:
        return _state("needs_you", "brokerlink stopped checking this connection. Reconnect to start again.")
    if status == ConnectionStatus.CHECKING:
        return _state("checking", "Checking the connection now…")

    at = next_attempt_at(connection, last_sweep=last_sweep, now=now)
    if at > now + timedelta(seconds=1):
        when, clock = until_phrase(at, now=now), clock_phrase(at)
        timed = {"next_at": at, "next_text": when, "times": ((when, at, "countdown"), (clock, at, "clock"))}
        clock = f" (at {clock})"
    else:
        when, clock, timed = "any moment now", "", {}
    # An open circuit may hold a connection back before its first check: still true.
    if status == ConnectionStatus.BROKER_OUTAGE:
        return _state(
            "waiting",
            f"{name} is failing for everyone. Nothing to do: brokerlink checks again {when}{clock} "
            "and resumes by itself.",
            **timed,
        )
    if refresh_awaited(connection, now=now):
        return _state(
            "waiting",
            f"Waiting for {name} to answer a token refresh. Nothing to do: brokerlink does not send the refresh "
            "token again before the broker answers, so the grant is not spent twice, and resumes by itself.",
            **timed,
        )
    if not checked_this_grant(connection):
        return _state("checking", f"Waiting for the first check, {when}{clock}.", **timed)
    passed = last_check_passed(connection)
    category = connection.last_error_category
    if not passed and category == errors.RATE_LIMITED:
        return _state(
            "rate_limited",
            f"{name} asked brokerlink to slow down. Nothing to do: the next check is {when}{clock}.",
            **timed,
        )
    if status == ConnectionStatus.DEGRADED and not passed:
        if category == errors.CONFIGURATION:
            return _state(
                "needs_admin",
                f"{name} rejected this site's app credentials; an administrator has to fix them. "
                f"brokerlink checks again {when}{clock}.",
                **timed,
            )
        max_attempts = profile.backoff.max_attempts if profile else 0
        failures = max(connection.consecutive_failures, connection.retry_attempt)
        if max_attempts and connection.retry_attempt >= max_attempts:
            every = duration_phrase(float(engine_setting("SLOW_PROBE_SECONDS")))
            return _state(
                "retrying_slowly",
                f"{failures} checks in a row failed. brokerlink now checks every {every} and keeps the tokens "
                f"alive; nothing to do, it recovers by itself. Next check {when}{clock}.",
                **timed,
            )
        return _state(
            "retrying",
            f"The last check failed ({failures} in a row). Nothing to do yet: brokerlink tries again {when}{clock}.",
            **timed,
        )
    if passed:
        ago = ago_phrase(connection.last_check_at, now=now)
        times = ((ago, connection.last_check_at, "ago"),)
        if is_slow(connection, profile):
            return _state(
                "slow",
                f"The last check passed {ago} but took {connection.last_latency_ms:,} ms; "
                f"{name} usually answers in {profile.baseline_latency_ms:,} ms.",
                times=times,
            )
        return _state("connected", f"The last check passed {ago}.", times=times)
    return _state("checking", f"Waiting for the next check, {when}{clock}.", **timed)


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
        from connections.engine.health import quality_for

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


@dataclass
class SummaryTile:
    group: str
    label: str
    count: int
    selected: bool = False


@dataclass
class Summary:
    counts: dict = field(default_factory=dict)
    total: int = 0
    selected: str = ""

    @property
    def tiles(self) -> list[SummaryTile]:
        return [SummaryTile(g, label, self.counts.get(g, 0), self.selected == g) for g, label in GROUPS]

    def __getattr__(self, name):
        # summary.working, summary.needs_you, ... in templates and tests
        counts = self.__dict__.get("counts", {})
        if name in dict(GROUPS):
            return counts.get(name, 0)
        raise AttributeError(name)


def summary_for(states: list[StatusView], *, selected: str = "") -> Summary:
    """Counts per group of the connections shown (disconnected ones are not on the dashboard):
    the tiles add up to the list."""
    summary = Summary(selected=selected if selected in dict(GROUPS) else "")
    for state in states:
        if state.group == "disconnected":
            continue
        summary.total += 1
        summary.counts[state.group] = summary.counts.get(state.group, 0) + 1
    return summary


@dataclass
class Dashboard:
    cards: list[ConnectionView]
    summary: Summary
    monitoring: MonitoringView
    now: datetime = field(default_factory=timezone.now)
    shown: list[ConnectionView] = field(default_factory=list)


def dashboard_for_user(*, user, now: datetime | None = None, show: str = "") -> Dashboard:
    """Everything the dashboard shows, in a fixed number of queries whatever the number of
    connections. `show` is a summary group: only those cards are listed (the tiles filter)."""
    now = now or timezone.now()
    connections = list(selectors.connection_list_for_user(user=user).select_related("check_log"))
    recent_checks_attach(connections)
    profiles = ProfileCache()
    last_sweep = monitoring_last_run()
    cards = [
        present_connection(c, checks=c.recent_checks, now=now, profiles=profiles, last_sweep=last_sweep)
        for c in connections
    ]
    summary = summary_for([c.state for c in cards], selected=show)
    shown = [c for c in cards if not summary.selected or c.state.group == summary.selected]
    return Dashboard(
        cards=shown, summary=summary, monitoring=monitoring_status(now=now, last=last_sweep), now=now, shown=shown
    )


def summary_for_user(*, user, now: datetime | None = None, show: str = "") -> Summary:
    now = now or timezone.now()
    profiles = ProfileCache()
    last_sweep = monitoring_last_run()
    states = [
        status_for(c, profile=profiles[c.broker_slug], now=now, last_sweep=last_sweep)
        for c in selectors.connection_list_for_user(user=user)
    ]
    return summary_for(states, selected=show)


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
        from connections.engine.health import health_explain

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

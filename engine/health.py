"""Health score, quality label, uptime, latency history and trends, missed heartbeats.

One model, computed by `health_compute` for every path that checks a connection (the sweep,
"Check now", the admin's check action: all go through engine.batch_write.outcomes_write) and
explained on the detail page by `health_explain` with the same numbers:

    50 x success ratio    checks passed / checks made over the last 24 hours (the hour in
                          progress and the 24 before it, from the connection's check log),
                          counting only checks of the current grant (a reconnect starts a new
                          history)
    20 x latency          1 at or below the broker's own baseline_latency_ms, 0 at 5x the
                          baseline or when the check failed, linear in between
    15 x token freshness  1 when the tokens are valid and the grant has no hard deadline within
                          72 h; 0.6 within 72 h; 0.3 within 24 h; 0 without a usable token
    15 x stability        1 - (transitions into degraded / broker_outage / needs_reauth / failed
                          in the last 7 days of this grant) / 3, floored at 0

Rules around the sum:
- fewer than HEALTH_MIN_CHECKS checks of the current grant: no score ("not enough data yet");
- a check that did not pass (failed, or skipped because the broker is in an outage) never
  raises the score;
- a connection that needs re-authentication or has failed is capped at 20;
- the stored score is steady (`score_steady`): it moves only when the computed score is
  SCORE_STEP points or more away from it (or on the cap, or from "no score"), so a check's
  latency moving the sum by a point or two changes nothing a person sees and makes no open
  page re-fetch its card. The quality band follows the stored score, so it is steady too.
Quality: excellent >= 85, good >= 65, poor >= 40, critical below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, Q
from django.utils import timezone

from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.state import INACTIVE_STATUSES
from engine.batch import connections_with_ids
from engine.checkstore import history_for, ring_of, rings_for
from engine.conf import engine_setting
from engine.models import Quality
from engine.ring import HourCounts, epoch_hour, hour_start

BAD_STATUSES = [
    ConnectionStatus.DEGRADED,
    ConnectionStatus.BROKER_OUTAGE,
    ConnectionStatus.NEEDS_REAUTH,
    ConnectionStatus.FAILED,
]


@dataclass
class HealthInputs:
    checks: int = 0
    successes: int = 0
    bad_transitions: int = 0
    # HEALTH_MIN_CHECKS, read once per batch by health_inputs_for (else at each score).
    min_checks: int | None = None


@dataclass
class HealthPart:
    key: str
    name: str
    weight: int
    factor: float
    # What counts, in one sentence, and the current input behind the factor.
    rule: str
    current: str

    @property
    def points(self) -> float:
        return self.weight * self.factor


@dataclass
class HealthReport:
    score: int | None
    quality: str
    checks: int
    min_checks: int
    parts: list[HealthPart]
    capped: bool = False
    held: bool = False  # the check did not pass, so the score was kept from rising

    @property
    def enough_data(self) -> bool:
        return self.score is not None


# The stored score moves only by this much or more (see the module's rules).
SCORE_STEP = 5


def score_steady(shown: int | None, computed: int | None, *, exact: bool = False) -> int | None:
    """The score to store and show, given the one shown now and the one just computed.

    Hysteresis: a computed score within SCORE_STEP - 1 points of the shown one keeps the shown
    one, so a score wobbling between 91 and 94 reads 93 throughout; a bigger move is shown as
    it is. `exact` (the needs-you cap) and a change to or from "no score" always show."""
    if exact or shown is None or computed is None:
        return computed
    return computed if abs(computed - shown) >= SCORE_STEP else shown


def health_min_checks() -> int:
    return int(engine_setting("HEALTH_MIN_CHECKS"))


def quality_for(score: int | None) -> str:
    if score is None:
        return ""
    if score >= 85:
        return Quality.EXCELLENT
    if score >= 65:
        return Quality.GOOD
    if score >= 40:
        return Quality.POOR
    return Quality.CRITICAL


def latency_factor(latency_ms: int | None, baseline_ms: int) -> float:
    if latency_ms is None:
        return 0.0
    baseline = max(1, baseline_ms)
    if latency_ms <= baseline:
        return 1.0
    return max(0.0, 1.0 - (latency_ms - baseline) / (4 * baseline))


def _has_live_token(connection: Connection, now: datetime, status: str) -> bool:
    if status in (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED, ConnectionStatus.DISCONNECTED):
        return False  # the broker refused the grant (or it was given up): the tokens are dead
    has_access = bool(connection.access_token_sealed) and (
        connection.access_expires_at is None or connection.access_expires_at > now
    )
    return has_access or bool(connection.refresh_token_sealed)


def freshness_factor(connection: Connection, *, now: datetime, status: str | None = None) -> float:
    if not _has_live_token(connection, now, status or connection.status):
        return 0.0
    deadline = connection.reauth_deadline_at
    if deadline is not None:
        left = deadline - now
        if left <= timedelta(0):
            return 0.0
        if left <= timedelta(hours=24):
            return 0.3
        if left <= timedelta(hours=72):
            return 0.6
    return 1.0


def _freshness_text(connection: Connection, factor: float, now: datetime, status: str) -> str:
    if not _has_live_token(connection, now, status):
        return "no usable token"
    deadline = connection.reauth_deadline_at
    if deadline is not None and deadline - now <= timedelta(hours=72):
        hours = max(0, int((deadline - now).total_seconds() // 3600))
        return f"sign-in needed within {hours} h"
    return "tokens valid, no sign-in needed within 3 days"


def health_compute(
    connection: Connection,
    inputs: HealthInputs,
    *,
    ok: bool | None,
    latency_ms: int | None,
    baseline_ms: int,
    now: datetime,
    previous: int | None = None,
    status: str | None = None,
) -> HealthReport:
    """The score and its parts. `ok` is this check's result (None: no check was made, e.g.
    the broker's circuit is open); `inputs` are the checks already stored (this one excluded);
    `previous` is the score before this check; `status` the one it decided (the engine scores
    before it writes the transition), else the row's."""
    status = status or connection.status
    checks, successes = inputs.checks, inputs.successes
    if ok is not None:
        checks, successes = checks + 1, successes + (1 if ok else 0)
    success = successes / checks if checks else 0.0
    latency = latency_factor(latency_ms if ok else None, baseline_ms)
    freshness = freshness_factor(connection, now=now, status=status)
    stability = max(0.0, 1.0 - inputs.bad_transitions / 3)
    if ok:
        latency_text = f"{latency_ms} ms against a usual {baseline_ms} ms"
    elif ok is None and latency_ms is not None:
        latency = latency_factor(latency_ms, baseline_ms)
        latency_text = f"{latency_ms} ms (last passed check) against a usual {baseline_ms} ms"
    else:
        latency_text = "the last check did not pass"
    parts = [
        HealthPart(
            "success",
            "Checks passed",
            50,
            success,
            "The share of checks that passed in the last 24 hours, since the last (re)connect.",
            f"{successes} of {checks} passed" if checks else "no checks yet",
        ),
        HealthPart(
            "latency",
            "Speed",
            20,
            latency,
            "Full marks at or below the broker's usual answer time, none at five times it or when a check fails.",
            latency_text,
        ),
        HealthPart(
            "freshness",
            "Tokens",
            15,
            freshness,
            "Full marks while the tokens are valid and no sign-in is due within 3 days.",
            _freshness_text(connection, freshness, now, status),
        ),
        HealthPart(
            "stability",
            "Stability",
            15,
            stability,
            "Each trouble spell in the last 7 days (failing, broker outage, sign-in needed) costs a third.",
            f"{inputs.bad_transitions} trouble spell{'s' if inputs.bad_transitions != 1 else ''}",
        ),
    ]
    min_checks = inputs.min_checks if inputs.min_checks is not None else health_min_checks()
    report = HealthReport(score=None, quality="", checks=checks, min_checks=min_checks, parts=parts)
    if checks < min_checks:
        return report
    score = int(round(max(0.0, min(100.0, sum(p.points for p in parts)))))
    if status in (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED) and score > 20:
        score, report.capped = 20, True
    if ok is not True and previous is not None and score > previous:
        score, report.held = previous, True
    report.score, report.quality = score, quality_for(score)
    return report


def health_score(
    connection: Connection,
    inputs: HealthInputs,
    *,
    ok: bool | None,
    latency_ms: int | None,
    baseline_ms: int,
    now: datetime,
    status: str | None = None,
) -> int | None:
    """The score the engine stores after a check (None: not enough data yet), steady
    (`score_steady`). The score before the check is the row's current health_score; `status`
    is the one the check decided."""
    report = health_compute(
        connection,
        inputs,
        ok=ok,
        latency_ms=latency_ms,
        baseline_ms=baseline_ms,
        now=now,
        previous=connection.health_score,
        status=status,
    )
    return score_steady(connection.health_score, report.score, exact=report.capped)


def _grant_counts(ring, *, grant_started_at: datetime | None, now: datetime) -> tuple[int, int]:
    """(checks, passed) of the current grant in the hour in progress and the 24 before it, from
    the check log: whole hours that began after the grant started, and the checks themselves
    (from the log's last checks) in the hour the grant started."""
    first = epoch_hour(now) - 24
    if grant_started_at is None:
        return ring.counts_from(first)
    grant_hour = epoch_hour(grant_started_at)
    whole_from = grant_hour if hour_start(grant_hour) == grant_started_at else grant_hour + 1
    checks, passed = ring.counts_from(max(first, whole_from))
    if whole_from > grant_hour >= first:
        end = hour_start(grant_hour + 1)
        for check in ring.checks:
            if grant_started_at <= check.checked_at < end:
                checks, passed = checks + 1, passed + (1 if check.ok else 0)
    return checks, passed


def health_inputs_for(connections, *, now: datetime, rings: dict | None = None) -> dict:
    """Inputs for a batch of connections: the check counts from their check logs (`rings`, read
    in the batch's own query; else one query), transitions in one aggregate query.

    Only the current grant counts: checks and events from before the connection's
    grant_started_at (set again by every reconnect) belong to a grant that no longer exists."""
    connections = list(connections)
    if connections and not isinstance(connections[0], Connection):
        connections = list(Connection.objects.filter(pk__in=connections).only("pk", "grant_started_at"))
    ids = [c.pk for c in connections]
    if rings is None:
        rings = rings_for(ids)
    min_checks = health_min_checks()
    inputs = {pk: HealthInputs(min_checks=min_checks) for pk in ids}
    for conn in connections:
        item = inputs[conn.pk]
        item.checks, item.successes = _grant_counts(rings[conn.pk], grant_started_at=conn.grant_started_at, now=now)
    this_grant = Q(connection__grant_started_at__isnull=True)
    events = (
        connections_with_ids(ConnectionEvent.objects.all(), ids, field="connection")
        .filter(created_at__gte=now - timedelta(days=7), to_status__in=BAD_STATUSES)
        .filter(this_grant | Q(created_at__gte=F("connection__grant_started_at")))
        .values("connection_id")
        .annotate(n=Count("id"))
    )
    for row in events:
        inputs[row["connection_id"]].bad_transitions = row["n"]
    return inputs


def health_explain(connection: Connection, *, baseline_ms: int, now: datetime | None = None) -> HealthReport:
    """The stored score with its parts as of now, for the detail page: same inputs, same rules."""
    now = now or timezone.now()
    inputs = health_inputs_for([connection], now=now, rings={connection.pk: ring_of(connection)})[connection.pk]
    last_ok = connection.last_check_at is not None and connection.last_success_at == connection.last_check_at
    report = health_compute(
        connection,
        inputs,
        ok=None,
        latency_ms=connection.last_latency_ms if last_ok else None,
        baseline_ms=baseline_ms,
        now=now,
    )
    # The figure shown is the stored one (what the cards show); the parts are the inputs now.
    if report.score is not None or connection.health_score is not None:
        stored = connection.health_score
        # Not checked while it needs you, so the stored score is from before: capped as shown.
        if stored is not None and connection.status in (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED):
            report.capped = stored > 20
            stored = min(stored, 20)
        report.score = stored if report.checks >= report.min_checks else None
        report.quality = quality_for(report.score)
    return report


# --- selectors for pages and admin ------------------------------------------------------


def connection_uptime_windows(connection: Connection, *, hours: list[int], now: datetime | None = None) -> list:
    """[(passed, checks)] over each of the last `hours` (24, 168, 720, 8760), in at most one query.

    From the check log (the last 26 hours) and the UptimeDay rows before it, at hour
    granularity (a cut hour counts when at least half of it is inside the window; beyond
    HOURLY_RETENTION_DAYS, whole days)."""
    now = now or timezone.now()
    history = history_for(connection, since=now - timedelta(hours=max(hours)))
    found = []
    for window in hours:
        counts = history.window(now - timedelta(hours=window))
        found.append((counts.passed, counts.checks))
    return found


def connection_uptime_counts(connection: Connection, *, hours: int, now: datetime | None = None) -> tuple[int, int]:
    """(passed, checks) over the last `hours`."""
    return connection_uptime_windows(connection, hours=[hours], now=now)[0]


def connection_uptime(connection: Connection, *, hours: int, now: datetime | None = None) -> float | None:
    """Share of passed checks over the last `hours`, or None without data."""
    ok, total = connection_uptime_counts(connection, hours=hours, now=now)
    return ok / total if total else None


def connection_latency_history(connection: Connection, *, hours: int = 24, now: datetime | None = None) -> list[dict]:
    """[{hour, avg_ms, max_ms, checks, errors}] oldest first, hours with checks only."""
    now = now or timezone.now()
    history = history_for(connection, since=now - timedelta(hours=hours))
    first = epoch_hour(now - timedelta(hours=hours))
    return [
        {
            "hour": hour_start(hour),
            "avg_ms": counts.latency_avg_ms,
            "max_ms": counts.latency_max_ms if counts.checks else None,
            "checks": counts.checks,
            "errors": counts.checks - counts.passed,
        }
        for hour, counts in sorted(history.hours.items())
        if hour >= first
    ]


def connection_trends(connection: Connection, *, now: datetime | None = None) -> dict:
    """{"latency": improving|stable|degrading|unknown, "error_rate": rising|stable|falling|unknown}:
    the last hour (its checks, from the check log) against the 24 whole hours before it."""
    now = now or timezone.now()
    ring = ring_of(connection)
    last = [c for c in ring.checks if now - timedelta(hours=1) <= c.checked_at <= now + timedelta(seconds=1)]
    latencies = [c.latency_ms for c in last if c.ok and c.latency_ms is not None]
    recent = {
        "n": len(last),
        "errors": sum(1 for c in last if not c.ok),
        "latency": sum(latencies) / len(latencies) if latencies else None,
    }
    history = history_for(connection, since=now - timedelta(hours=25), ring=ring)
    cut = epoch_hour(now - timedelta(hours=1))
    counts = HourCounts()
    for hour, item in history.hours.items():
        if cut - 24 <= hour < cut:
            counts.add(item)
    before = {"n": counts.checks, "errors": counts.checks - counts.passed, "latency": counts.latency_avg_ms}
    latency = "unknown"
    if recent["latency"] and before["latency"]:
        ratio = recent["latency"] / before["latency"]
        latency = "improving" if ratio < 0.8 else "degrading" if ratio > 1.25 else "stable"
    error_rate = "unknown"
    if recent["n"] and before["n"]:
        now_rate, before_rate = recent["errors"] / recent["n"], before["errors"] / before["n"]
        error_rate = (
            "rising" if now_rate > before_rate + 0.05 else "falling" if now_rate < before_rate - 0.05 else "stable"
        )
    return {"latency": latency, "error_rate": error_rate}


def connection_is_overdue(connection: Connection, *, now: datetime | None = None) -> bool:
    """A missed heartbeat: an active connection whose check is later than the grace allows."""
    now = now or timezone.now()
    if connection.status in INACTIVE_STATUSES:
        return False
    if connection.next_check_at is None:
        return True  # active, yet no sweep will check it: its heartbeat is missed
    return connection.next_check_at < now - timedelta(seconds=engine_setting("OVERDUE_GRACE_SECONDS"))


def connections_overdue(*, now: datetime | None = None):
    """The connections connection_is_overdue flags, as one query."""
    now = now or timezone.now()
    grace = timedelta(seconds=engine_setting("OVERDUE_GRACE_SECONDS"))
    late = Q(engine_state__next_check_at__lt=now - grace) | Q(engine_state__next_check_at__isnull=True)
    return Connection.objects.exclude(status__in=INACTIVE_STATUSES).filter(late)


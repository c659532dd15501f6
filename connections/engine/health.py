"""Health score, quality label, uptime, latency history and trends, missed heartbeats.

One model, computed by `health_compute` for every path that checks a connection (the sweep,
"Check now", the admin's check action: all go through engine.check.outcomes_write) and
explained on the detail page by `health_explain` with the same numbers:

    50 x success ratio    checks passed / checks made over the last 24 hours, counting only
                          checks of the current grant (a reconnect starts a new history)
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
- a connection that needs re-authentication or has failed is capped at 20.
Quality: excellent >= 85, good >= 65, poor >= 40, critical below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Avg, Count, F, Max, Min, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from connections.engine.conf import engine_setting
from connections.engine.models import SweepRun, UptimeRollup
from connections.models import CheckResult, Connection, ConnectionEvent, ConnectionStatus, Quality
from connections.state import INACTIVE_STATUSES

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


def _status(connection: Connection) -> str:
    """The status being scored: the one this check decided (engine.check._apply sets it before
    the transition is written), else the row's."""
    return getattr(connection, "health_status", None) or connection.status


def _has_live_token(connection: Connection, now: datetime) -> bool:
    if _status(connection) in (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED, ConnectionStatus.DISCONNECTED):
        return False  # the broker refused the grant (or it was given up): the tokens are dead
    has_access = bool(connection.access_token_sealed) and (
        connection.access_expires_at is None or connection.access_expires_at > now
    )
    return has_access or bool(connection.refresh_token_sealed)


def freshness_factor(connection: Connection, *, now: datetime) -> float:
    if not _has_live_token(connection, now):
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


def _freshness_text(connection: Connection, factor: float, now: datetime) -> str:
    if not _has_live_token(connection, now):
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
) -> HealthReport:
    """The score and its parts. `ok` is this check's result (None: no check was made, e.g.
    the broker's circuit is open); `inputs` are the checks already stored (this one excluded);
    `previous` is the score before this check."""
    checks, successes = inputs.checks, inputs.successes
    if ok is not None:
        checks, successes = checks + 1, successes + (1 if ok else 0)
    success = successes / checks if checks else 0.0
    latency = latency_factor(latency_ms if ok else None, baseline_ms)
    freshness = freshness_factor(connection, now=now)
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
            _freshness_text(connection, freshness, now),
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
    min_checks = health_min_checks()
    report = HealthReport(score=None, quality="", checks=checks, min_checks=min_checks, parts=parts)
    if checks < min_checks:
        return report
    score = int(round(max(0.0, min(100.0, sum(p.points for p in parts)))))
    if _status(connection) in (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED) and score > 20:
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
) -> int | None:
    """The score the engine stores after a check (None: not enough data yet). The score
    before the check is the row's current health_score."""
    return health_compute(
        connection,
        inputs,
        ok=ok,
        latency_ms=latency_ms,
        baseline_ms=baseline_ms,
        now=now,
        previous=connection.health_score,
    ).score


def health_inputs_for(ids, *, now: datetime) -> dict:
    """Inputs for a batch in three aggregate queries (not per connection).

    Only the current grant counts: rows from before the connection's grant_started_at (set
    again by every reconnect) belong to a grant that no longer exists."""
    inputs = {pk: HealthInputs() for pk in ids}
    this_grant = Q(connection__grant_started_at__isnull=True)
    # Raw rows from the start of the previous hour (at least an hour of them), rollups before
    # that: a rollup covers its whole hour, so the split must fall on an hour boundary or the
    # rows of the hour it cuts would be counted twice.
    split = (now - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    raw = (
        CheckResult.objects.filter(connection_id__in=ids, checked_at__gte=split)
        .filter(this_grant | Q(checked_at__gte=F("connection__grant_started_at")))
        .values("connection_id")
        .annotate(n=Count("id"), ok=Count("id", filter=Q(ok=True)))
    )
    for row in raw:
        item = inputs[row["connection_id"]]
        item.checks += row["n"]
        item.successes += row["ok"]
    rolled = (
        UptimeRollup.objects.filter(connection_id__in=ids, hour__gte=split - timedelta(hours=23), hour__lt=split)
        # A rollup hour counts when it started after the grant (the grant's first part-hour
        # is left out rather than mixed with the old grant's checks).
        .filter(this_grant | Q(hour__gte=F("connection__grant_started_at")))
        .values("connection_id")
        .annotate(n=Sum("checks"), ok=Sum("successes"))
    )
    for row in rolled:
        item = inputs[row["connection_id"]]
        item.checks += row["n"] or 0
        item.successes += row["ok"] or 0
    events = (
        ConnectionEvent.objects.filter(
            connection_id__in=ids, created_at__gte=now - timedelta(days=7), to_status__in=BAD_STATUSES
        )
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
    inputs = health_inputs_for([connection.pk], now=now)[connection.pk]
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
        report.score = connection.health_score if report.checks >= report.min_checks else None
        report.quality = quality_for(report.score)
    return report


# --- selectors for pages and admin ------------------------------------------------------


def connection_uptime_counts(connection: Connection, *, hours: int, now: datetime | None = None) -> tuple[int, int]:
    """(passed, checks) over the last `hours` (24, 168, 720, 8760).

    Hourly rollups cover the whole hours already rolled up; raw results cover the rest (the
    part-hour at the start of the window, while its raw rows are kept, and the hours since the
    last rollup), so the figure does not move when the hourly rollup runs."""
    now = now or timezone.now()
    start = now - timedelta(hours=hours)
    rolled = UptimeRollup.objects.filter(connection=connection, hour__gte=start).aggregate(
        n=Sum("checks"), ok=Sum("successes"), first=Min("hour"), last=Max("hour")
    )
    raw = CheckResult.objects.filter(connection=connection, checked_at__gte=start)
    if rolled["last"]:
        raw = raw.filter(Q(checked_at__lt=rolled["first"]) | Q(checked_at__gte=rolled["last"] + timedelta(hours=1)))
    raw = raw.aggregate(n=Count("id"), ok=Count("id", filter=Q(ok=True)))
    return (rolled["ok"] or 0) + raw["ok"], (rolled["n"] or 0) + raw["n"]


def connection_uptime(connection: Connection, *, hours: int, now: datetime | None = None) -> float | None:
    """Share of passed checks over the last `hours`, or None without data."""
    ok, total = connection_uptime_counts(connection, hours=hours, now=now)
    return ok / total if total else None


def connection_latency_history(connection: Connection, *, hours: int = 24, now: datetime | None = None) -> list[dict]:
    """[{hour, avg_ms, max_ms, checks, errors}] oldest first, from raw results."""
    now = now or timezone.now()
    rows = (
        CheckResult.objects.filter(connection=connection, checked_at__gte=now - timedelta(hours=hours))
        .annotate(hour=TruncHour("checked_at"))
        .values("hour")
        .annotate(
            avg_ms=Avg("latency_ms", filter=Q(ok=True)),
            max_ms=Max("latency_ms"),
            checks=Count("id"),
            errors=Count("id", filter=Q(ok=False)),
        )
        .order_by("hour")
    )
    return list(rows)


def _window(connection: Connection, start: datetime, end: datetime) -> dict:
    return CheckResult.objects.filter(connection=connection, checked_at__gte=start, checked_at__lt=end).aggregate(
        n=Count("id"), errors=Count("id", filter=Q(ok=False)), latency=Avg("latency_ms", filter=Q(ok=True))
    )


def connection_trends(connection: Connection, *, now: datetime | None = None) -> dict:
    """{"latency": improving|stable|degrading|unknown, "error_rate": rising|stable|falling|unknown}:
    the last hour against the 24 hours before it."""
    now = now or timezone.now()
    recent = _window(connection, now - timedelta(hours=1), now + timedelta(seconds=1))
    before = _window(connection, now - timedelta(hours=25), now - timedelta(hours=1))
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
    return connection.next_check_at < now - timedelta(seconds=engine_setting("OVERDUE_GRACE_SECONDS"))


def connections_overdue(*, now: datetime | None = None):
    now = now or timezone.now()
    grace = timedelta(seconds=engine_setting("OVERDUE_GRACE_SECONDS"))
    return Connection.objects.exclude(status__in=INACTIVE_STATUSES).filter(next_check_at__lt=now - grace)


def engine_status(*, now: datetime | None = None, interval_seconds: float | None = None) -> dict:
    """For ops pages: last sweep, whether the beat looks stalled (no sweep started in three
    intervals: HEARTBEAT_INTERVAL_SECONDS, the beat's own), how many checks are overdue."""
    now = now or timezone.now()
    if interval_seconds is None:
        interval_seconds = float(getattr(settings, "HEARTBEAT_INTERVAL_SECONDS", 60))
    last = SweepRun.objects.order_by("-started_at").first()
    stalled = last is None or last.started_at < now - timedelta(seconds=3 * interval_seconds)
    overdue = connections_overdue(now=now)
    worst = overdue.aggregate(oldest=Min("next_check_at"))["oldest"]
    return {
        "last_sweep": last,
        "sweep_stalled": stalled,
        "overdue": overdue.count(),
        "max_overdue_seconds": (now - worst).total_seconds() if worst else 0.0,
        "unfinished_sweeps": SweepRun.objects.filter(
            finished_at__isnull=True, started_at__lt=now - timedelta(minutes=10)
        ).count(),
    }

"""Alerts for administrators: per broker high latency, high error rate, low share of healthy
connections, and the sweep falling behind its schedule.

`alerts_evaluate()` runs every minute (beat). It measures each condition, raises an alert or
updates the open one with the same key, and clears open alerts whose condition has ended.

Thresholds: Django setting `ALERT_<NAME>` wins, then the environment variable
`BROKERLINK_ALERT_<NAME>`, then the default below (see docs/operations.md, "Alerts").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from common.tunables import tunable
from connections.models import Connection, ConnectionStatus
from engine.checkstore import histogram_percentile, tallies_since
from ops.models import Alert

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, float] = {
    # Latency, error rate and the sweep are judged over this trailing window.
    "WINDOW_SECONDS": 900,
    # Fewer checks than this in the window for a broker: too few to judge latency or errors.
    "MIN_CHECKS": 20,
    # p95 heartbeat latency above baseline_latency_ms x factor (the broker profile's baseline).
    "LATENCY_WARNING_FACTOR": 3.0,
    "LATENCY_CRITICAL_FACTOR": 6.0,
    # Share of failed checks in the window.
    "ERROR_RATE_WARNING": 0.10,
    "ERROR_RATE_CRITICAL": 0.50,
    # Share of a broker's active connections that are connected; judged from this many up.
    "HEALTHY_SHARE_WARNING": 0.90,
    "HEALTHY_SHARE_CRITICAL": 0.50,
    "HEALTHY_MIN_CONNECTIONS": 5,
    # The latest sweep's lag behind schedule (oldest claimed check), or time since any sweep started.
    "SWEEP_LAG_WARNING_SECONDS": 60,
    "SWEEP_LAG_CRITICAL_SECONDS": 300,
}

HEALTHY = [ConnectionStatus.CONNECTED, ConnectionStatus.CHECKING]
# Not judged: not yet connected, or deliberately ended.
NOT_ACTIVE = [ConnectionStatus.PENDING, ConnectionStatus.DISCONNECTED]


def alert_setting(name: str) -> float:
    return float(tunable("ALERT", name, DEFAULTS))


@dataclass(frozen=True)
class Condition:
    kind: str
    severity: str
    message: str
    value: float
    broker_slug: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.broker_slug or '*'}"


def _level(value: float, warning: float, critical: float, *, below: bool = False) -> str | None:
    if below:
        value, warning, critical = -value, -warning, -critical
    if value >= critical:
        return Alert.Severity.CRITICAL
    if value >= warning:
        return Alert.Severity.WARNING
    return None


def _latency_p95_by_broker(tallies: dict) -> dict[str, float]:
    """The p95 of passed checks' latency per broker, from the tallies' histograms: exact below
    100 ms, to two significant digits above (the bucket's upper bound)."""
    found = {}
    for slug, row in tallies.items():
        p95 = histogram_percentile(row["latency_passed"], 0.95)
        if p95 is not None:
            found[slug] = p95
    return found


def _profiles() -> dict:
    from brokers.registry import all_profiles

    return {p.slug: p for p in all_profiles()}


def conditions_measure(*, now: datetime | None = None) -> list[Condition]:
    """Every alert condition that holds right now."""
    now = now or timezone.now()
    since = now - timedelta(seconds=alert_setting("WINDOW_SECONDS"))
    min_checks = alert_setting("MIN_CHECKS")
    profiles = _profiles()
    found: list[Condition] = []

    tallies = tallies_since(since)
    counts = {slug: {"n": row["checks"], "failed": row["checks"] - row["passed"]} for slug, row in tallies.items()}
    p95s = _latency_p95_by_broker(tallies)
    minutes = int(alert_setting("WINDOW_SECONDS") // 60)
    for slug, row in counts.items():
        name = profiles[slug].name if slug in profiles else slug
        if row["n"] < min_checks:
            continue
        rate = row["failed"] / row["n"]
        level = _level(rate, alert_setting("ERROR_RATE_WARNING"), alert_setting("ERROR_RATE_CRITICAL"))
        if level:
            found.append(Condition(
                Alert.Kind.HIGH_ERROR_RATE, level,
                f"{name}: {rate:.0%} of {row['n']} checks failed in the last {minutes} min.", rate, slug,
            ))
        baseline = profiles[slug].baseline_latency_ms if slug in profiles else None
        p95 = p95s.get(slug)
        if baseline and p95 is not None and row["n"] - row["failed"] >= min_checks:
            ratio = p95 / baseline
            level = _level(ratio, alert_setting("LATENCY_WARNING_FACTOR"), alert_setting("LATENCY_CRITICAL_FACTOR"))
            if level:
                found.append(Condition(
                    Alert.Kind.HIGH_LATENCY, level,
                    f"{name}: p95 heartbeat latency {p95:.0f} ms over {minutes} min, {ratio:.1f}x its "
                    f"{baseline} ms baseline.", p95, slug,
                ))

    shares = (
        Connection.objects.exclude(status__in=NOT_ACTIVE)
        .values("broker_slug")
        .annotate(n=Count("id"), healthy=Count("id", filter=Q(status__in=HEALTHY)))
    )
    for row in shares:
        if row["n"] < alert_setting("HEALTHY_MIN_CONNECTIONS"):
            continue
        slug = row["broker_slug"]
        share = row["healthy"] / row["n"]
        level = _level(
            share, alert_setting("HEALTHY_SHARE_WARNING"), alert_setting("HEALTHY_SHARE_CRITICAL"), below=True
        )
        if level:
            name = profiles[slug].name if slug in profiles else slug
            found.append(Condition(
                Alert.Kind.LOW_HEALTHY_SHARE, level,
                f"{name}: only {row['healthy']} of {row['n']} active connections ({share:.0%}) are healthy.",
                share, slug,
            ))

    lag = sweep_lag(now=now)
    if lag is not None:
        level = _level(lag, alert_setting("SWEEP_LAG_WARNING_SECONDS"), alert_setting("SWEEP_LAG_CRITICAL_SECONDS"))
        if level:
            found.append(Condition(
                Alert.Kind.SWEEP_BEHIND, level,
                f"The heartbeat sweep is {lag:.0f} s behind its schedule (workers overloaded or stopped).", lag,
            ))
    return found


def sweep_lag(*, now: datetime) -> float | None:
    """Seconds the sweep is behind: the latest run's lag, or the silence since the last run
    started beyond one interval. None when nothing is monitored (no active connections)."""
    from connections.state import INACTIVE_STATUSES
    from engine.models import SweepRun

    if not Connection.objects.exclude(status__in=[*INACTIVE_STATUSES, ConnectionStatus.PENDING]).exists():
        return None
    last = SweepRun.objects.order_by("-started_at").first()
    if last is None:
        return None  # the beat has never run here: /health/ready/ reports that
    silence = (now - last.started_at).total_seconds() - float(settings.HEARTBEAT_INTERVAL_SECONDS)
    return max(last.max_lag_seconds, silence, 0.0)


def alerts_evaluate(*, now: datetime | None = None) -> dict[str, int]:
    """Raise, update and clear alerts from the current conditions. Safe to run twice at once:
    the open-key constraint keeps one open alert per condition."""
    now = now or timezone.now()
    conditions = {c.key: c for c in conditions_measure(now=now)}
    raised = updated = 0
    open_alerts = {a.key: a for a in Alert.objects.filter(cleared_at__isnull=True)}
    for key, condition in conditions.items():
        alert = open_alerts.get(key)
        if alert is None:
            try:
                with transaction.atomic():
                    Alert.objects.create(
                        key=key, kind=condition.kind, broker_slug=condition.broker_slug, severity=condition.severity,
                        message=condition.message[:500], value=condition.value, raised_at=now, last_seen_at=now,
                    )
            except IntegrityError:
                continue  # another evaluator raised it a moment ago
            raised += 1
            log = logger.error if condition.severity == Alert.Severity.CRITICAL else logger.warning
            log("ops.alert.raised", extra={"key": key, "severity": condition.severity, "value": condition.value})
            continue
        fields = {"message": condition.message[:500], "value": condition.value, "last_seen_at": now,
                  "severity": condition.severity}
        if condition.severity == Alert.Severity.CRITICAL and alert.severity != Alert.Severity.CRITICAL:
            # Worse than what was acknowledged: ask for attention again.
            fields.update(acknowledged_at=None, acknowledged_by=None)
        Alert.objects.filter(pk=alert.pk).update(**fields)
        updated += 1
    ended = [a.pk for key, a in open_alerts.items() if key not in conditions]
    cleared = Alert.objects.filter(pk__in=ended, cleared_at__isnull=True).update(cleared_at=now)
    for key in (k for k in open_alerts if k not in conditions):
        logger.info("ops.alert.cleared", extra={"key": key})
    return {"raised": raised, "updated": updated, "cleared": cleared, "open": len(conditions)}


def alerts_open():
    """Open alerts, unacknowledged first, critical before warning ("critical" < "warning")."""
    return Alert.objects.filter(cleared_at__isnull=True).select_related("acknowledged_by").order_by(
        F("acknowledged_at").asc(nulls_first=True), "severity", "-raised_at"
    )

"""Is monitoring running (the sweep's last round), and the staff page's one-word system badge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from pages.presenters.phrases import ago_phrase

# Monitoring counts as stopped after this many missed sweep cycles.
STALE_CYCLES = 3


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
    from engine.models import SweepRun

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

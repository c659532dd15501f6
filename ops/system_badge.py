"""The staff system status page's one-word badge, from what the page shows (a pure decision)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.monitoring import MonitoringView


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

"""Is monitoring running (the sweep's last round): the banner of the people's pages and the
staff system status page (ops) say it in the same words. The engine's, as its sweep is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from common.timephrases import ago_phrase

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
    """The last check round's start (a SweepRun: every beat tick writes one when a
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

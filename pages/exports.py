"""A connection's history and daily uptime as CSV rows, in the person's time zone (labelled)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.utils import timezone

from connections.models import Connection
from engine.ring import epoch_hour, hour_start
from pages import selectors

HISTORY_HEADER = ["time", "time_zone", "event", "status", "category", "message"]
UPTIME_HEADER = ["date", "time_zone", "checks", "passed", "uptime_percent"]


def _local(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


def history_rows(connection: Connection):
    zone = timezone.get_current_timezone_name()
    yield HISTORY_HEADER
    for event in connection.events.order_by("created_at", "id").iterator():
        yield [
            _local(event.created_at),
            zone,
            event.get_kind_display(),
            event.get_to_status_display() if event.to_status else "",
            event.get_category_display() if event.category else "",
            event.message,
        ]


def daily_uptime(connection: Connection, *, days: int = 90, now: datetime | None = None) -> list[tuple]:
    """(local date, checks, passed) oldest first, from the connection's hours (its check log and
    UptimeDay rows), so days are cut in the person's time zone."""
    now = now or timezone.now()
    history = selectors.connection_check_history(connection, since=now - timedelta(days=days))
    first = epoch_hour(now - timedelta(days=days))
    by_day: dict = defaultdict(lambda: [0, 0])
    for hour, counts in history.hours.items():
        if hour < first:
            continue
        day = timezone.localtime(hour_start(hour)).date()
        by_day[day][0] += counts.checks
        by_day[day][1] += counts.passed
    return [(day, n, ok) for day, (n, ok) in sorted(by_day.items())]


def uptime_rows(connection: Connection, *, now: datetime | None = None):
    zone = timezone.get_current_timezone_name()
    yield UPTIME_HEADER
    for day, n, ok in daily_uptime(connection, now=now):
        yield [day.isoformat(), zone, n, ok, f"{100 * ok / n:.2f}" if n else ""]

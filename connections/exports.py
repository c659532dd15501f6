"""A connection's history and daily uptime as CSV rows, in the person's time zone (labelled)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from connections.engine.models import UptimeRollup
from connections.models import CheckResult, Connection

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
    """(local date, checks, passed) oldest first. Hourly rollups where the engine made them
    (raw results are pruned), raw results for the hours not rolled up yet."""
    now = now or timezone.now()
    start = now - timedelta(days=days)
    hours: dict[datetime, tuple[int, int]] = {
        row.hour: (row.checks, row.successes)
        for row in UptimeRollup.objects.filter(connection=connection, hour__gte=start)
    }
    raw = (
        CheckResult.objects.filter(connection=connection, checked_at__gte=start)
        .annotate(hour=TruncHour("checked_at", tzinfo=UTC))
        .values("hour")
        .annotate(n=Count("id"), ok=Count("id", filter=Q(ok=True)))
    )
    for row in raw:
        hours.setdefault(row["hour"], (row["n"], row["ok"]))
    by_day: dict = defaultdict(lambda: [0, 0])
    for hour, (n, ok) in hours.items():
        day = timezone.localtime(hour).date()
        by_day[day][0] += n
        by_day[day][1] += ok
    return [(day, n, ok) for day, (n, ok) in sorted(by_day.items())]


def uptime_rows(connection: Connection, *, now: datetime | None = None):
    zone = timezone.get_current_timezone_name()
    yield UPTIME_HEADER
    for day, n, ok in daily_uptime(connection, now=now):
        yield [day.isoformat(), zone, n, ok, f"{100 * ok / n:.2f}" if n else ""]

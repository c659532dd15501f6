"""Raw CheckResults are rolled up into hourly UptimeRollups, then pruned after
CHECKRESULT_RETENTION_DAYS. Rolling up is idempotent (an upsert per connection and hour), so
running it twice or late never double-counts."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from connections.engine.conf import engine_setting
from connections.engine.models import UptimeRollup
from connections.models import CheckResult

logger = logging.getLogger(__name__)
DELETE_BATCH = 10_000


def checkresults_rollup(*, since: datetime | None = None, now: datetime | None = None) -> int:
    """Upsert hourly rollups for every complete hour from `since` (default: the retention window)."""
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0)
    since = since or end - timedelta(days=engine_setting("CHECKRESULT_RETENTION_DAYS"))
    rows = (
        CheckResult.objects.filter(checked_at__gte=since, checked_at__lt=end)
        .annotate(hour=TruncHour("checked_at"))
        .values("connection_id", "hour")
        .annotate(
            checks=Count("id"),
            successes=Count("id", filter=Q(ok=True)),
            latency_sum=Sum("latency_ms", filter=Q(ok=True)),
            latency_count=Count("latency_ms", filter=Q(ok=True)),
            latency_max=Max("latency_ms"),
        )
    )
    rollups = [
        UptimeRollup(
            connection_id=row["connection_id"],
            hour=row["hour"],
            checks=row["checks"],
            successes=row["successes"],
            latency_sum_ms=row["latency_sum"] or 0,
            latency_count=row["latency_count"],
            latency_max_ms=row["latency_max"] or 0,
        )
        for row in rows.iterator()
    ]
    UptimeRollup.objects.bulk_create(
        rollups,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["connection", "hour"],
        update_fields=["checks", "successes", "latency_sum_ms", "latency_count", "latency_max_ms"],
    )
    return len(rollups)


def checkresults_prune(*, now: datetime | None = None) -> int:
    """Roll up, then delete raw results older than the retention window, in bounded batches."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=engine_setting("CHECKRESULT_RETENTION_DAYS"))
    # Roll up the day before the cutoff as well, so nothing is deleted before it is counted.
    checkresults_rollup(since=cutoff - timedelta(days=1), now=now)
    deleted = 0
    while True:
        ids = list(CheckResult.objects.filter(checked_at__lt=cutoff).values_list("pk", flat=True)[:DELETE_BATCH])
        if not ids:
            break
        deleted += CheckResult.objects.filter(pk__in=ids).delete()[0]
    logger.info("connections.retention.pruned", extra={"deleted": deleted})
    return deleted

"""Raw CheckResults are rolled up into hourly UptimeRollups, then pruned after
CHECKRESULT_RETENTION_DAYS. Rolling up is idempotent (an upsert per connection and hour), so
running it twice or late never double-counts.

Both work in whole hours: a rollup recomputes an hour from all of its raw rows (never from a
window starting mid-hour), and pruning deletes whole hours only, so an hour that is rolled up
again after pruning still finds every raw row it had (or none, and keeps its rollup)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from connections.engine.conf import engine_setting
from connections.engine.models import UptimeRollup
from connections.models import CheckResult

logger = logging.getLogger(__name__)
DELETE_BATCH = 10_000


def hour_floor(moment: datetime) -> datetime:
    """The start of the UTC hour (rollup hours are UTC hours whatever TIME_ZONE says)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def checkresults_rollup(*, since: datetime | None = None, now: datetime | None = None) -> int:
    """Upsert hourly rollups for every complete hour from `since`'s hour (default: the retention
    window). An upsert replaces the hour's counts, so it must see the whole hour."""
    now = now or timezone.now()
    end = hour_floor(now)
    since = hour_floor(since) if since else end - timedelta(days=engine_setting("CHECKRESULT_RETENTION_DAYS"))
    rows = (
        CheckResult.objects.filter(checked_at__gte=since, checked_at__lt=end)
        .annotate(hour=TruncHour("checked_at", tzinfo=UTC))
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
    """Roll up, then delete raw results older than the retention window, in bounded batches.

    The cutoff is the start of an hour: a partly pruned hour would be rolled up again (by the
    next rollup over the retention window) from its remaining rows and lose the pruned ones."""
    now = now or timezone.now()
    cutoff = hour_floor(now - timedelta(days=engine_setting("CHECKRESULT_RETENTION_DAYS")))
    # Roll up everything about to be deleted first (from the oldest raw row, at least the day
    # before the cutoff), so nothing is deleted uncounted even when hourly rollups were missed.
    oldest = CheckResult.objects.filter(checked_at__lt=cutoff).aggregate(oldest=Min("checked_at"))["oldest"]
    checkresults_rollup(since=min(oldest or cutoff, cutoff - timedelta(days=1)), now=now)
    deleted = 0
    while True:
        ids = list(CheckResult.objects.filter(checked_at__lt=cutoff).values_list("pk", flat=True)[:DELETE_BATCH])
        if not ids:
            break
        deleted += CheckResult.objects.filter(pk__in=ids).delete()[0]
    logger.info("connections.retention.pruned", extra={"deleted": deleted})
    return deleted

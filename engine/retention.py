"""Keeping check storage bounded (engine.checkstore).

Hourly (`checkresults_rollup`): a day a connection's check log still holds but that has ended
without a later check (the connection needs you, or was stopped) is stored as an UptimeDay,
as its next check would do (safe to run twice); CheckTally rows older than
TALLY_RETENTION_HOURS (at least the metrics window and an hour) are deleted, so the tallies
stay a few hours of rows per broker and writer.

Daily (`checkresults_prune`): CheckResult rows (failed and status-changing checks) older than
CHECKRESULT_RETENTION_DAYS are deleted in bounded batches; UptimeDay rows lose their hours
after HOURLY_RETENTION_DAYS and are deleted after DAILY_RETENTION_DAYS."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from engine.checkstore import checklogs_flush
from engine.conf import engine_setting
from engine.models import CheckResult, CheckTally, UptimeDay

logger = logging.getLogger(__name__)
DELETE_BATCH = 10_000


def checkresults_rollup(*, now: datetime | None = None) -> int:
    """Store the finished days of check logs no later check has left behind, delete old tallies.
    Returns how many days were stored."""
    now = now or timezone.now()
    stored = checklogs_flush(now=now)
    hours = max(
        float(engine_setting("TALLY_RETENTION_HOURS")), getattr(settings, "METRICS_WINDOW_SECONDS", 0) / 3600 + 1
    )
    _delete_batched(CheckTally.objects.filter(minute__lt=now - timedelta(hours=hours)))
    return stored


def _delete_batched(queryset) -> int:
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:DELETE_BATCH])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]


def checkresults_prune(*, now: datetime | None = None) -> int:
    """Delete what has outlived its retention (see the module). Returns the CheckResult rows deleted."""
    now = now or timezone.now()
    checkresults_rollup(now=now)
    cutoff = now - timedelta(days=engine_setting("CHECKRESULT_RETENTION_DAYS"))
    deleted = _delete_batched(CheckResult.objects.filter(checked_at__lt=cutoff))
    today = now.astimezone(UTC).date()
    stripped = UptimeDay.objects.filter(
        day__lt=today - timedelta(days=engine_setting("HOURLY_RETENTION_DAYS")), hours__isnull=False
    ).update(hours=None)
    days = _delete_batched(
        UptimeDay.objects.filter(day__lt=today - timedelta(days=engine_setting("DAILY_RETENTION_DAYS")))
    )
    logger.info(
        "connections.retention.pruned",
        extra={"deleted": deleted, "hours_dropped": stripped, "days_deleted": days},
    )
    return deleted

"""What ops' views, tasks and admin actions change: service heartbeats, acknowledging alerts
(raising and clearing them is ops.alerts' evaluator)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from ops.models import Alert, ServiceHeartbeat

# The alert log lines keep the logger they always had, whichever module writes them.
alerts_logger = logging.getLogger("ops.alerts")


def service_heartbeat_record(*, kind: str, name: str, at: datetime | None = None) -> None:
    ServiceHeartbeat.objects.update_or_create(kind=kind, name=name, defaults={"last_seen_at": at or timezone.now()})


def service_heartbeat_latest(*, kind: str) -> datetime | None:
    row = ServiceHeartbeat.objects.filter(kind=kind).order_by("-last_seen_at").first()
    return row.last_seen_at if row else None


def alert_acknowledge(alert: Alert, *, user) -> bool:
    """Mark an open alert as seen. Returns False when it was already acknowledged or cleared."""
    changed = Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True, cleared_at__isnull=True).update(
        acknowledged_at=timezone.now(), acknowledged_by=user
    )
    if changed:
        alert.refresh_from_db()
        alerts_logger.info("ops.alert.acknowledged", extra={"key": alert.key, "user_id": user.pk})
    return bool(changed)

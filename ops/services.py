from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from ops.models import ServiceHeartbeat


def service_heartbeat_record(*, kind: str, name: str, at: datetime | None = None) -> None:
    ServiceHeartbeat.objects.update_or_create(kind=kind, name=name, defaults={"last_seen_at": at or timezone.now()})


def service_heartbeat_latest(*, kind: str) -> datetime | None:
    row = ServiceHeartbeat.objects.filter(kind=kind).order_by("-last_seen_at").first()
    return row.last_seen_at if row else None

"""The history line a successful refresh leaves on its connection: one per refresh a person
asked for or that had a reason worth reading, one summary line for routine refreshes."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from connections.models import Connection, ConnectionEvent
from connections.state import connection_event_record

ROUTINE_PREFIX = "Token refreshed automatically"


def refreshed_event_record(connection: Connection, *, reason: str, actor=None) -> None:
    """One history line per refresh that a person asked for or that had a reason worth reading;
    routine refreshes ahead of expiry update one summary line while nothing else happened."""
    now = timezone.now()
    if reason != "expiring" or actor is not None:
        connection_event_record(
            connection=connection,
            kind=ConnectionEvent.Kind.REFRESHED,
            message=f"Token refreshed ({reason}).",
            actor=actor,
        )
        return
    last = ConnectionEvent.objects.filter(connection=connection).order_by("-created_at", "-pk").first()
    if (
        last is not None
        and last.kind == ConnectionEvent.Kind.REFRESHED
        and last.message.startswith(ROUTINE_PREFIX)
        and now - last.created_at < timedelta(days=1)
    ):
        count = _routine_count(last.message) + 1
        last.message = f"{ROUTINE_PREFIX} {count} times, last at {now:%H:%M} UTC."
        last.save(update_fields=["message"])
        return
    connection_event_record(
        connection=connection,
        kind=ConnectionEvent.Kind.REFRESHED,
        message=f"{ROUTINE_PREFIX} before it expired ({now:%H:%M} UTC).",
    )


def _routine_count(message: str) -> int:
    words = message[len(ROUTINE_PREFIX) :].split()
    return int(words[0]) if words and words[0].isdigit() else 1

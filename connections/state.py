"""The one function that changes a connection's status, and the event it writes.

The event row is the outbox: it is written in the caller's transaction, and `connections.outbox`
announces it (live pages, webhooks) once that transaction commits, never before, never for a
rollback."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from connections import outbox
from connections.models import Connection, ConnectionEvent, ConnectionStatus

logger = logging.getLogger(__name__)

# Statuses that hold no live tokens and are not checked by the sweep.
INACTIVE_STATUSES = {ConnectionStatus.DISCONNECTED, ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.FAILED}


def connection_event_record(
    *,
    connection: Connection,
    kind: str,
    message: str = "",
    category: str = "",
    actor=None,
    from_status: str = "",
    to_status: str = "",
) -> ConnectionEvent:
    event = ConnectionEvent.objects.create(
        connection=connection,
        kind=kind,
        message=message[:500],
        category=category,
        actor=actor,
        from_status=from_status,
        to_status=to_status,
    )
    outbox.event_written(event)
    return event


def connection_transition(
    *,
    connection: Connection,
    to_status: str,
    message: str = "",
    category: str = "",
    actor=None,
    kind: str = ConnectionEvent.Kind.STATUS_CHANGED,
    save: bool = True,
) -> bool:
    """Move a connection to `to_status`, writing one event. Returns False when nothing changed.

    Callers that batch writes pass save=False and save the row themselves; the event is
    still written here so no transition goes unrecorded. Open pages and webhooks hear of the
    change from that event, after commit (`connections.outbox`).
    """
    from_status = connection.status
    if from_status == to_status and kind == ConnectionEvent.Kind.STATUS_CHANGED:
        return False
    connection.status = to_status
    connection.status_changed_at = timezone.now()
    # The row and its event commit together (inside a caller's transaction: as part of it).
    with transaction.atomic(savepoint=False):
        if save:
            connection.save(update_fields=["status", "status_changed_at", "updated_at"])
        connection_event_record(
            connection=connection,
            kind=kind,
            message=message,
            category=category,
            actor=actor,
            from_status=from_status,
            to_status=to_status,
        )
    logger.info(
        "connections.status.changed",
        extra={"connection_id": str(connection.pk), "from": from_status, "to": to_status, "category": category},
    )
    return True

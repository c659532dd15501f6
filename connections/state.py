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


def check_scheduled(connection: Connection, status: str, *, now) -> bool:
    """Keep the next check in step with the status: none for a status the sweep never checks
    (NULL keeps the row out of the claim's partial index, so no claim reads past it), due at once
    for a connection that comes back (a reconnect) without one. Returns True if it changed."""
    if status in INACTIVE_STATUSES:
        wanted = None
    elif connection.next_check_at is None:
        wanted = now
    else:
        return False
    if connection.next_check_at == wanted:
        return False
    connection.next_check_at = wanted
    return True


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
    fields = ["status", "status_changed_at", "updated_at"]
    if check_scheduled(connection, to_status, now=connection.status_changed_at):
        fields.append("next_check_at")
    # The row and its event commit together (inside a caller's transaction: as part of it).
    with transaction.atomic(savepoint=False):
        if save:
            connection.save(update_fields=fields)
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

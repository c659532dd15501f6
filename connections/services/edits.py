"""The person's own edits to a connection: rename it, put a disconnected card away, remove it."""

from __future__ import annotations

import logging

from django.utils import timezone

from connections import display
from connections.models import Connection, ConnectionStatus

logger = logging.getLogger(__name__)


def connection_rename(connection: Connection, nickname: str) -> None:
    connection.nickname = " ".join(nickname.split())[:80]
    Connection.objects.filter(pk=connection.pk).update(nickname=connection.nickname, updated_at=timezone.now())
    _tell_open_pages(connection)


def _tell_open_pages(connection: Connection) -> None:
    """Open pages show the new name / drop the archived card (live updates; best effort)."""
    display.connection_changed_publish(connection)


def connection_archive(connection: Connection) -> bool:
    """Put a disconnected card away (off the dashboard). Only disconnected ones: False otherwise."""
    if connection.status != ConnectionStatus.DISCONNECTED:
        return False
    connection.archived_at = connection.archived_at or timezone.now()
    Connection.objects.filter(pk=connection.pk).update(archived_at=connection.archived_at)
    _tell_open_pages(connection)
    return True


def connection_remove(connection: Connection) -> bool:
    """Delete a disconnected connection with its history (and any token copy kept to revoke)."""
    if connection.status != ConnectionStatus.DISCONNECTED:
        return False
    logger.info("connections.removed", extra={"connection_id": str(connection.pk)})
    connection.delete()
    return True

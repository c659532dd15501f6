"""The manual actions (views, admin, API): "Check now" and "Refresh now", with the sweep's rules."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from connections import errors
from connections.errors import BrokerError
from connections.models import Connection, ConnectionStatus
from connections.state import INACTIVE_STATUSES, connection_transition
from engine.batch import Outcome
from engine.check import connections_check
from engine.conf import engine_setting
from engine.models import EngineState
from engine.refresh import (
    IN_PROGRESS,
    OUTCOME_UNKNOWN,
    connection_refresh,
)

logger = logging.getLogger(__name__)

# "Refresh now" waits this long for a refresh someone else is running, then reports it running.
MANUAL_REFRESH_WAIT = 20.0


class CheckBusy(Exception):
    """Another worker holds this connection's lease right now."""


def _claim_one(connection: Connection, *, owner: str, now: datetime, lease_seconds: float) -> bool:
    from django.db.models import Q

    return bool(
        EngineState.objects.filter(pk=connection.pk)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=""))
        .update(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
    )


def connection_check_now(connection: Connection, *, actor=None) -> Outcome:
    """Check one connection right away with the sweep's rules ("Check now").

    Shows "checking" while it runs, then the result. Raises CheckBusy when a worker is
    checking it at this moment, ValueError for a connection that is not active."""
    import uuid

    if connection.status in INACTIVE_STATUSES:
        raise ValueError(f"cannot check a {connection.status} connection")
    now = timezone.now()
    owner = f"manual:{uuid.uuid4().hex[:12]}"
    if not _claim_one(connection, owner=owner, now=now, lease_seconds=engine_setting("LEASE_SECONDS")):
        raise CheckBusy(str(connection.pk))
    connection.refresh_from_db()
    before = connection.status
    connection_transition(
        connection=connection, to_status=ConnectionStatus.CHECKING, actor=actor, message="Check requested."
    )
    try:
        stats = connections_check([connection], now=now, owner=owner)
    except Exception:
        # Never leave the row "checking": put the status back and let the sweep check it.
        logger.exception("connections.check_now.failed", extra={"connection_id": str(connection.pk)})
        EngineState.objects.filter(pk=connection.pk, lease_owner=owner).update(lease_owner="", lease_until=None)
        connection.refresh_from_db()
        if connection.status == ConnectionStatus.CHECKING:
            connection_transition(
                connection=connection,
                to_status=before,
                message="The check could not finish inside brokerlink; the next scheduled check will run it.",
                category=errors.UNEXPECTED,
            )
        raise
    if stats.outcomes:
        return stats.outcomes[0]
    return Outcome(connection=connection)


def connection_refresh_now(connection: Connection, *, actor=None) -> Connection:
    """Refresh the tokens right away ("Refresh now"), single-flight like every refresh. A dead
    grant moves the connection to needs_reauth; other errors are re-raised for the caller to show."""
    try:
        result = connection_refresh(connection.pk, reason="manual", actor=actor, force=True, wait=MANUAL_REFRESH_WAIT)
        if result.reason == IN_PROGRESS:
            raise BrokerError(errors.NETWORK, "A token refresh is already running; its result will appear shortly.")
        if result.reason == OUTCOME_UNKNOWN:
            raise BrokerError(
                errors.NETWORK,
                "The broker did not answer the last refresh; brokerlink will not send the refresh token again "
                "before the broker answers a later request, so it is not spent twice.",
            )
    except BrokerError as error:
        connection.refresh_from_db()
        if error.needs_reauth and connection.status not in INACTIVE_STATUSES:
            connection_transition(
                connection=connection,
                to_status=ConnectionStatus.NEEDS_REAUTH,
                message=error.message,
                category=error.category,
                actor=actor,
            )
        raise
    return result.connection

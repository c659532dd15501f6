"""Single-flight token refresh.

The row lock (`SELECT ... FOR UPDATE`) is held across the token call, and expiry is checked
again after taking it: a web request, an admin action and two workers can all ask, but only
the first spends the refresh token; the others find a fresh token and return. A rotated
refresh token spent twice kills the grant at most brokers, so this is not an optimisation.
The new tokens are committed before anything else (event, heartbeat, status) happens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.profile import BrokerProfile
from connections import errors
from connections.engine.conf import engine_setting
from connections.errors import BrokerError
from connections.models import Connection, ConnectionEvent
from connections.state import INACTIVE_STATUSES, connection_event_record

logger = logging.getLogger(__name__)

TOKEN_FIELDS = [
    "access_token_sealed",
    "refresh_token_sealed",
    "token_type",
    "scope",
    "access_expires_at",
    "refresh_expires_at",
    "grant_started_at",
    "reauth_deadline_at",
    "last_refreshed_at",
    "token_meta",
    "updated_at",
]
# Refresh at most once a day just to keep an idle refresh token alive.
IDLE_REFRESH_MIN_GAP = timedelta(days=1)


@dataclass
class RefreshResult:
    connection: Connection
    refreshed: bool
    reason: str = ""


def connection_profile(connection: Connection) -> BrokerProfile:
    from connections.broker_client import profile_for

    return profile_for(connection.broker_slug, connection.environment)


def refresh_due(connection: Connection, profile: BrokerProfile, *, now: datetime) -> str:
    """Why this connection's token should be refreshed now ("" when it should not)."""
    if not connection.refresh_token_sealed:
        return ""
    if connection.access_expires_at is None or not connection.access_token_sealed:
        return "expiring" if not connection.access_token_sealed else ""
    issued = connection.last_refreshed_at or connection.grant_started_at
    lifetime = (connection.access_expires_at - issued).total_seconds() if issued else None
    if connection.access_expires_at - now <= timedelta(seconds=profile.refresh_margin(lifetime)):
        return "expiring"
    last = connection.last_refreshed_at or connection.grant_started_at
    if last is None or now - last < IDLE_REFRESH_MIN_GAP:
        return ""
    if now - last >= timedelta(days=engine_setting("IDLE_REFRESH_DAYS")):
        return "idle"
    # A refresh token whose own lifetime is a quarter gone from running out is refreshed while it
    # still works (brokers that issue a new refresh token on refresh extend it that way).
    ttl = profile.token_rules.refresh_ttl
    if (
        ttl
        and connection.refresh_expires_at
        and connection.refresh_expires_at != connection.reauth_deadline_at
        and connection.refresh_expires_at - now <= timedelta(seconds=ttl / 4)
    ):
        return "idle"
    return ""


@sensitive_variables()
def connection_refresh(
    connection_id,
    *,
    reason: str,
    actor=None,
    force: bool = False,
    rejected_access_sealed: str | None = None,
    now: datetime | None = None,
) -> RefreshResult:
    """Refresh one connection's tokens if (still) needed, single-flight across processes.

    `force` refreshes even if the token is not near expiry (a manual "refresh now", or a 401 on
    the heartbeat). With `rejected_access_sealed`, a forced refresh is skipped when the stored
    access token is no longer the one the broker rejected: someone else already refreshed it.
    Raises BrokerError (needs_reauth=True for a dead grant). Configuration errors flag the
    broker app once. Never changes status: callers apply the outcome (engine.check).
    """
    from connections.broker_client import token_refresh
    from connections.tokens import connection_apply_token_response

    error: BrokerError | None = None
    with transaction.atomic():
        connection = (
            Connection.objects.select_for_update(of=("self",)).select_related("broker_app").get(pk=connection_id)
        )
        now = now or timezone.now()
        profile = connection_profile(connection)
        if connection.status in INACTIVE_STATUSES:
            return RefreshResult(connection, False, "inactive")
        if rejected_access_sealed is not None and connection.access_token_sealed != rejected_access_sealed:
            return RefreshResult(connection, False, "already_refreshed")
        if not force and not refresh_due(connection, profile, now=now):
            return RefreshResult(connection, False, "fresh")
        if not connection.refresh_token_sealed:
            error = BrokerError(
                errors.AUTH, f"{profile.name} gave no refresh token; reconnect to continue.", needs_reauth=True
            )
        elif connection.broker_app is None:
            error = BrokerError(errors.CONFIGURATION, f"No {profile.name} app is configured for this connection.")
        else:
            try:
                token = token_refresh(profile, connection.broker_app, connection.refresh_token)
            except BrokerError as exc:
                error = exc
            else:
                connection_apply_token_response(
                    connection=connection, profile=profile, token=token, now=now, first_grant=False
                )
                connection.save(update_fields=TOKEN_FIELDS)
    # Committed. Everything below is bookkeeping about what already happened.
    if error is not None:
        connection_event_record(
            connection=connection,
            kind=ConnectionEvent.Kind.REFRESH_FAILED,
            category=error.category,
            message=error.message,
            actor=actor,
        )
        if error.category == errors.CONFIGURATION and connection.broker_app is not None:
            from brokers.services import broker_app_flag_config_problem

            broker_app_flag_config_problem(connection.broker_app, error.message)
        logger.warning(
            "connections.refresh.failed",
            extra={
                "connection_id": str(connection.pk),
                "category": error.category,
                "reason": reason,
                "http_status": error.http_status,
            },
        )
        raise error
    connection_event_record(
        connection=connection, kind=ConnectionEvent.Kind.REFRESHED, message=f"Token refreshed ({reason}).", actor=actor
    )
    logger.info("connections.refresh.done", extra={"connection_id": str(connection.pk), "reason": reason})
    return RefreshResult(connection, True, reason)

"""A batch of connections being checked: each row's Outcome, the batch's stats, how an
exception about one row becomes that row's error, and how the batch's rows are selected by id
(the sweep's claim, the write's re-read). Shared by engine.check and engine.batch_write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection as db_connection
from django.db import models
from django.db.models.expressions import RawSQL

from brokers.profile import BrokerProfile
from connections import errors
from connections.errors import BrokerError
from connections.models import Connection

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    connection: Connection
    profile: BrokerProfile | None = None
    ok: bool = False
    error: BrokerError | None = None
    latency_ms: int | None = None
    http_status: int | None = None
    refreshed: bool = False
    # Blocked by an open circuit breaker: no call was made.
    deferred_until: datetime | None = None
    access_token: str = ""
    access_sealed: str = ""
    # The refresh is still running (or its outcome is unknown) and no token can be used yet:
    # nothing was checked, and the connection is looked at again soon.
    waiting_for_refresh: str = ""
    # When the refresh whose outcome is unknown went out: a heartbeat sent after it and answered
    # (even a 401 for an expired access token, a `probe`) ends the wait (engine.rotation).
    unknown_sent_at: datetime | None = None
    probe: bool = False

    @property
    def checked(self) -> bool:
        return self.deferred_until is None and (self.ok or self.error is not None)


@dataclass
class BatchStats:
    checked: int = 0
    refreshed: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    outcomes: list[Outcome] = field(default_factory=list)


def connections_with_ids(queryset, ids: list, *, field: str = "pk"):
    """`queryset.filter(<field>__in=ids)` where `field` holds a connection's id (the key of
    Connection, of EngineState and of CheckLog, or a ConnectionEvent's `connection`); on
    PostgreSQL as `column = ANY(%s)` with one array parameter, because Django prepares an IN
    list value by value (its cost: docs/benchmarks.md#figures-the-code-cites)."""
    if db_connection.vendor != "postgresql":
        return queryset.filter(**{f"{field}__in": ids})
    qn = db_connection.ops.quote_name
    meta = queryset.model._meta
    target = meta.pk if field == "pk" else meta.get_field(field)
    column = f"{qn(meta.db_table)}.{qn(target.column)}"
    # Names from the model, the ids a parameter.
    any_id = RawSQL(f"{column} = ANY(%s::uuid[])", (list(ids),), output_field=models.BooleanField())  # noqa: S611
    return queryset.filter(any_id)


def row_crashed(outcome: Outcome, exc: Exception, *, during: str) -> None:
    """Turn an exception about one connection into that connection's error."""
    from vault.crypto import VaultError

    logger.exception(
        "connections.check.row_failed", extra={"connection_id": str(outcome.connection.pk), "during": during}
    )
    if isinstance(exc, VaultError):
        outcome.error = BrokerError(
            errors.UNEXPECTED,
            "brokerlink cannot open this connection's stored tokens (encryption key missing or data damaged). "
            "An administrator must restore the key; reconnecting stores new tokens.",
        )
    elif isinstance(exc, BrokerError):
        outcome.error = exc
    else:
        outcome.error = BrokerError(
            errors.UNEXPECTED,
            f"Checking this connection failed inside brokerlink during the {during} ({type(exc).__name__}).",
        )

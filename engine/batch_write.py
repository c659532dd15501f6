"""Phase 5 of a check batch (engine.check), the write: each row's Decision from engine.decide
(a pure function of what the check saw), then one transaction: status transitions (with events)
only on change (the only write to the connection's row), one UPDATE of the EngineState rows
(releasing the lease), the checks (engine.checkstore), breaker bookkeeping.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from enum import Enum

from django.db import connection as db_connection
from django.db import connections, models, transaction
from django.utils import timezone

from connections import display, outbox
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.state import INACTIVE_STATUSES, check_scheduled, connection_transition
from engine import circuit
from engine.batch import BatchStats, Outcome, connections_with_ids, row_crashed
from engine.checkstore import CheckRecord, checks_store
from engine.conf import engine_setting
from engine.dbretry import db_write_retried
from engine.decide import (
    ERROR_MESSAGE_LENGTH,
    FAULT_CATEGORIES,
    Decision,
    Observed,
    RowState,
    decide,
    policy_for,
    unchanged,
)
from engine.health import health_inputs_for, health_score, quality_for
from engine.models import ENGINE_FIELDS, EngineState
from engine.ring import Check, Ring

logger = logging.getLogger(__name__)

# What the batch writes of every row it checked: its EngineState, never the connection's row
# (a status change is written by connection_transition, with its event).
WRITE_FIELDS = list(ENGINE_FIELDS)


def _row_state(conn: Connection) -> RowState:
    return RowState(
        status=conn.status,
        consecutive_failures=conn.consecutive_failures,
        retry_attempt=conn.retry_attempt,
        last_check_at=conn.last_check_at,
        last_success_at=conn.last_success_at,
        last_latency_ms=conn.last_latency_ms,
        last_error_category=conn.last_error_category,
        last_error_message=conn.last_error_message,
    )


def _observed(outcome: Outcome) -> Observed:
    return Observed(
        ok=outcome.ok,
        error=outcome.error,
        latency_ms=outcome.latency_ms,
        deferred_until=outcome.deferred_until,
        waiting_for_refresh=outcome.waiting_for_refresh,
    )


def _crashed_decision(outcome: Outcome, row: RowState, exc: Exception, *, now: datetime) -> Decision:
    """Deciding failed inside brokerlink: the connection shows that error and is looked at again
    after the broker's longest backoff."""
    row_crashed(outcome, exc, during="write")
    cap = outcome.profile.backoff.cap_seconds if outcome.profile else 3600
    error = outcome.error
    return replace(
        unchanged(row, now=now),
        status=ConnectionStatus.DEGRADED,
        category=error.category,
        message=error.message,
        next_check_at=now + timedelta(seconds=cap),
        last_error_category=error.category,
        last_error_message=error.message[:ERROR_MESSAGE_LENGTH],
    )


def decision_apply(conn: Connection, decision: Decision) -> None:
    """Put the decision's engine fields on the row for the batch write. The status is not one
    of them: a change of status is written by connection_transition, with its event."""
    conn.next_check_at = decision.next_check_at
    conn.consecutive_failures, conn.retry_attempt = decision.consecutive_failures, decision.retry_attempt
    conn.last_check_at, conn.last_success_at = decision.last_check_at, decision.last_success_at
    conn.last_latency_ms = decision.last_latency_ms
    conn.last_error_category, conn.last_error_message = decision.last_error_category, decision.last_error_message


def _breakers_record(outcomes: list[Outcome], *, now: datetime) -> dict[str, datetime]:
    """Count this batch's passes and faults into each broker's circuit breaker. Returns, per
    broker whose breaker is not closed, until when: its faults are the broker's outage."""
    per_broker: dict[str, list[int]] = {}
    policies = {}
    messages = {}
    for outcome in outcomes:
        if outcome.deferred_until is not None or outcome.profile is None or not outcome.checked:
            continue
        slug = outcome.connection.broker_slug
        counts = per_broker.setdefault(slug, [0, 0])
        policies[slug] = outcome.profile.circuit
        if outcome.ok:
            counts[0] += 1
        elif outcome.error.category in FAULT_CATEGORIES:
            counts[1] += 1
            messages[slug] = outcome.error.message
    open_until: dict[str, datetime] = {}
    for slug, (successes, faults) in per_broker.items():
        population = None
        if faults and not successes:
            population = Connection.objects.filter(broker_slug=slug).exclude(status__in=INACTIVE_STATUSES).count()
        breaker = circuit.breaker_record(
            broker_slug=slug,
            successes=successes,
            faults=faults,
            policy=policies[slug],
            now=now,
            message=messages.get(slug, ""),
            population=population,
        )
        if breaker is not None and breaker.state != circuit.CLOSED:
            open_until[slug] = breaker.next_probe_at or now
    return open_until


def _outcomes_still_mine(outcomes: list[Outcome], *, owner: str) -> tuple[list[Outcome], dict]:
    """The outcomes whose rows still have the status and lease they were checked with, and the
    check logs of all. Someone (a user disconnecting, an expired lease taken over) may have moved
    a row while we were checking it: those rows are left alone."""
    ids = [o.connection.pk for o in outcomes]
    current = {}
    rings = {}
    for pk, status, lease, log in connections_with_ids(Connection.objects.all(), ids).values_list(
        "pk", "status", "engine_state__lease_owner", "check_log__data"
    ):
        current[pk], rings[pk] = (status, lease), Ring(log)
    return [o for o in outcomes if current.get(o.connection.pk) == (o.connection.status, owner)], rings


def _decision_for(outcome: Outcome, *, now: datetime, open_until: dict[str, datetime], policies: dict) -> Decision:
    row = _row_state(outcome.connection)
    try:
        policy = None
        if outcome.profile is not None:
            key = id(outcome.profile)
            if key not in policies:
                slow_probe = float(engine_setting("SLOW_PROBE_SECONDS"))
                policies[key] = policy_for(outcome.profile, slow_probe_seconds=slow_probe)
            policy = policies[key]
        return decide(
            _observed(outcome),
            row,
            now=now,
            policy=policy,
            breaker_open_until=open_until.get(outcome.connection.broker_slug),
        )
    except Exception as exc:  # noqa: BLE001 - one bad row must not sink the batch
        return _crashed_decision(outcome, row, exc, now=now)


def _check_record(outcome: Outcome, decision: Decision, *, now: datetime) -> CheckRecord:
    conn = outcome.connection
    return CheckRecord(
        connection_id=conn.pk,
        broker_slug=conn.broker_slug,
        check=Check(
            checked_at=now,
            ok=outcome.ok,
            latency_ms=outcome.latency_ms,
            http_status=outcome.http_status,
            category="" if outcome.ok else outcome.error.category,
        ),
        keep=decision.status != conn.status,
    )


def _health_update(outcome: Outcome, decision: Decision, inputs, *, now: datetime) -> None:
    """Score the check. The status scored is the one this check decided (a connection that now
    needs you is capped), although its transition is written later."""
    if outcome.profile is None or outcome.waiting_for_refresh:
        return
    conn = outcome.connection
    try:
        conn.health_score = health_score(
            conn,
            inputs[conn.pk],
            ok=None if outcome.deferred_until else outcome.ok,
            latency_ms=outcome.latency_ms,
            baseline_ms=outcome.profile.baseline_latency_ms,
            now=now,
            status=decision.status,
        )
        conn.quality = quality_for(conn.health_score)
    except Exception:  # noqa: BLE001 - a score is not worth a batch
        logger.exception("connections.check.score_failed", extra={"connection_id": str(conn.pk)})


def outcomes_write(outcomes: list[Outcome], *, now: datetime, owner: str, stats: BatchStats) -> None:
    # Breakers first: an outage decides how this batch's failures are labelled.
    open_until = _breakers_record(outcomes, now=now)
    mine, rings = _outcomes_still_mine(outcomes, owner=owner)
    stats.skipped += len(outcomes) - len(mine)
    inputs = health_inputs_for([o.connection for o in mine], now=now, rings=rings)
    # Decide every row in memory first, then write it all in one transaction that can be
    # retried as a whole when the database refuses.
    decisions: list[tuple[Outcome, Decision]] = []
    results = []
    policies: dict = {}
    shown = display.display_versions(o.connection for o in mine)  # live pages: what users see, before
    for outcome in mine:
        conn = outcome.connection
        decision = _decision_for(outcome, now=now, open_until=open_until, policies=policies)
        decision_apply(conn, decision)
        decisions.append((outcome, decision))
        if outcome.deferred_until is not None or outcome.waiting_for_refresh:
            stats.deferred += 1
        else:
            stats.checked += 1
            stats.failed += 0 if outcome.ok else 1
            results.append(_check_record(outcome, decision, now=now))
        stats.refreshed += 1 if outcome.refreshed else 0
        _health_update(outcome, decision, inputs, now=now)
        conn.lease_owner, conn.lease_until = "", None
    before = {o.connection.pk: (o.connection.status, o.connection.status_changed_at) for o in mine}

    def write() -> None:
        for outcome in mine:
            outcome.connection.status, outcome.connection.status_changed_at = before[outcome.connection.pk]
        moved = set()
        # The batch's status changes go out together from the outbox after commit.
        with transaction.atomic(), outbox.events_batched():
            statuses_now = _statuses_locked([o.connection.pk for o, d in decisions if d.status != o.connection.status])
            for outcome, decision in decisions:
                if decision.status != outcome.connection.status:
                    current = statuses_now.get(outcome.connection.pk)
                    if current != outcome.connection.status:
                        # Moved meanwhile (a disconnect, a Check now): that change stands, and
                        # the next check follows it, not this decision.
                        check_scheduled(outcome.connection, current, now=now)
                        continue
                    connection_transition(
                        connection=outcome.connection,
                        to_status=decision.status,
                        message=decision.message,
                        category=decision.category,
                        kind=ConnectionEvent.Kind.STATUS_CHANGED,
                    )
                    moved.add(outcome.connection.pk)
            connections_write_engine_fields([o.connection for o in mine])
            checks_store(results)
            # Changes shown that are not status changes (score, quality, error, expiry); after commit.
            display.display_changed_publish((o.connection for o in mine if o.connection.pk not in moved), shown)

    db_write_retried(write)
    stats.outcomes.extend(mine)


def _statuses_locked(ids: list) -> dict:
    """The committed status of the rows about to change status, locked until the batch's write
    commits: a disconnect that committed after the check read its row is seen here, not undone."""
    if not ids:
        return {}
    rows = Connection.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", "status")
    return dict(rows)


# Field classes whose Python values psycopg adapts exactly as Django would prepare them
# (aware datetimes, ints, floats, str, UUID): their per-value get_db_prep_save is skipped (its
# cost: docs/benchmarks.md#figures-the-code-cites). Any other class (a custom field) goes through Django.
_PLAIN_FIELDS = {
    models.DateTimeField,
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.PositiveIntegerField,
    models.PositiveSmallIntegerField,
    models.SmallIntegerField,
    models.FloatField,
    models.UUIDField,
    models.OneToOneField,  # EngineState's key: the connection's UUID
}


def _column_values(f, rows: list[EngineState], db) -> list:
    values = [getattr(row, f.attname) for row in rows]
    if type(f) not in _PLAIN_FIELDS or (
        type(f) is models.DateTimeField and any(v is not None and timezone.is_naive(v) for v in values)
    ):
        return [f.get_db_prep_save(v, db) for v in values]
    return [v.value if isinstance(v, Enum) else v for v in values]


def _set_clause(field, qn) -> str:
    column = qn(field.column)
    if field.name == "next_check_at":
        # A row whose next check went to NULL while it was being checked left the checked set
        # (a disconnect committed meanwhile): it stays NULL. A row claimed for a check never
        # has NULL otherwise.
        return f"{column} = CASE WHEN c.{column} IS NULL THEN NULL ELSE v.{column} END"
    return f"{column} = v.{column}"


def connections_write_engine_fields(connections_: list[Connection]) -> None:
    """Write WRITE_FIELDS of these connections' EngineState rows. On PostgreSQL one
    `UPDATE … FROM unnest(arrays)` statement (Django's bulk_update builds a CASE per field and
    row, once the largest cost of a sweep: docs/benchmarks.md#figures-the-code-cites); elsewhere
    bulk_update."""
    if not connections_:
        return
    rows = [c.engine_state_get() for c in connections_]
    if db_connection.vendor != "postgresql":
        EngineState.objects.bulk_update(rows, WRITE_FIELDS, batch_size=500)
        EngineState.objects.filter(pk__in=[r.pk for r in rows], connection__status__in=INACTIVE_STATUSES).exclude(
            next_check_at=None
        ).update(next_check_at=None)
        return
    qn = db_connection.ops.quote_name
    pk = EngineState._meta.pk
    fields = [EngineState._meta.get_field(name) for name in WRITE_FIELDS]
    columns = [pk, *fields]
    db = connections[db_connection.alias]  # not the proxy: one lookup per field and row otherwise
    arrays = [_column_values(f, rows, db) for f in columns]
    unnest = ", ".join(f"%s::{f.db_type(db_connection)}[]" for f in columns)
    names = ", ".join(qn(f.column) for f in columns)
    sets = ", ".join(_set_clause(f, qn) for f in fields)
    sql = (
        f"UPDATE {qn(EngineState._meta.db_table)} AS c SET {sets} "  # noqa: S608 - names from the model
        f"FROM unnest({unnest}) AS v({names}) WHERE c.{qn(pk.column)} = v.{qn(pk.column)}"
    )
    with db_connection.cursor() as cursor:
        cursor.execute(sql, arrays)

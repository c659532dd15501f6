"""Checking a batch of connections: make the token valid, call the heartbeat, record the outcome.

Every step is isolated per connection: whatever goes wrong with one row (a token that cannot be
decrypted, a malformed stored value, a crash in a hook) becomes that connection's error, and
the rest of the batch is checked and written as usual.

Used by the sweep and by the manual "check now" / "refresh now" services, so both follow
the same rules. Phases per batch (database work stays synchronous, HTTP is concurrent):

1. gate:      the broker's circuit breaker decides pass / probe / blocked (no call at all)
2. refresh:   tokens expiring within the profile's margin (or idle too long) are refreshed on the
              process's refresh pool (engine.refresh_runner), each single-flight by a claim on
              the row (engine.refresh). A refresh still running after a short wait goes on by
              itself; the connection is checked with the token it has while that one lives
3. heartbeat: aiohttp, bounded concurrency, per-request timeout (engine.heartbeat_client)
4. 401:       exactly one forced refresh, then one more heartbeat
5. write:     each row's Decision from engine.decide (a pure function of what the check saw),
              then one transaction: status transitions (with events) only on change (the only
              write to the connection's row), one UPDATE of the EngineState rows (releasing
              the lease), the checks (engine.checkstore: the check logs rewritten in place,
              full rows only for failures and status changes), breaker bookkeeping
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum

from django.db import close_old_connections, connections, models, transaction
from django.db import connection as db_connection
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.profile import BrokerProfile
from connections import display, errors, outbox
from connections.engine import circuit
from connections.engine.checkstore import CheckRecord, checks_store
from connections.engine.conf import engine_setting
from connections.engine.dbretry import db_write_retried
from connections.engine.decide import (
    ERROR_MESSAGE_LENGTH,
    FAULT_CATEGORIES,
    Decision,
    Observed,
    RowState,
    decide,
    policy_for,
    unchanged,
)
from connections.engine.health import health_inputs_for, health_score, quality_for
from connections.engine.heartbeat_client import HeartbeatRequest, heartbeats_run
from connections.engine.models import ENGINE_FIELDS, EngineState
from connections.engine.refresh import (
    IN_PROGRESS,
    OUTCOME_UNKNOWN,
    connection_profile,
    connection_refresh,
    refresh_claimed,
    refresh_due,
    refresh_later_answer_record,
    refresh_waiting_message,
)
from connections.engine.refresh_runner import PENDING, refreshes_run
from connections.engine.ring import Check, Ring
from connections.errors import BrokerError
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.state import INACTIVE_STATUSES, connection_transition

logger = logging.getLogger(__name__)

# What the batch writes of every row it checked: its EngineState, never the connection's row
# (a status change is written by connection_transition, with its event).
WRITE_FIELDS = list(ENGINE_FIELDS)
# An access token with less life than this is not used for a heartbeat while its refresh runs.
MIN_TOKEN_LIFE = timedelta(seconds=15)


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


def connections_with_ids(queryset, ids: list):
    """`queryset.filter(pk__in=ids)` (of Connection, or of EngineState, whose key is the
    connection's id); on PostgreSQL as `id = ANY(%s)` with one array parameter, because Django
    prepares an IN list value by value (its cost: docs/benchmarks.md#figures-the-code-cites)."""
    if db_connection.vendor != "postgresql":
        return queryset.filter(pk__in=ids)
    qn = db_connection.ops.quote_name
    meta = queryset.model._meta
    column = f"{qn(meta.db_table)}.{qn(meta.pk.column)}"
    # Names from the model, the ids a parameter.
    any_id = RawSQL(f"{column} = ANY(%s::uuid[])", (list(ids),), output_field=models.BooleanField())  # noqa: S611
    return queryset.filter(any_id)


def broker_concurrency_per_lane() -> int:
    """Heartbeats in flight at one broker from one lane: the cluster-wide BROKER_CONCURRENCY
    shared by the SWEEP_LANES lanes the beat's tick keeps in flight at most."""
    return max(1, int(engine_setting("BROKER_CONCURRENCY")) // max(1, int(engine_setting("SWEEP_LANES"))))


def _token_usable(conn: Connection, now: datetime) -> bool:
    return bool(
        conn.access_token_sealed and (conn.access_expires_at is None or conn.access_expires_at - now > MIN_TOKEN_LIFE)
    )


def _use_stored_token(outcome: Outcome) -> None:
    conn = outcome.connection
    outcome.access_sealed = conn.access_token_sealed
    outcome.access_token = conn.access_token if conn.access_token_sealed else ""


def _refresh_many(jobs: list[tuple[Outcome, dict]], *, now: datetime) -> None:
    """Run refreshes on the refresh pool; each outcome gets its new token, its error, or (the
    refresh still running) the token it has while that one lives."""
    if not jobs:
        return
    results = refreshes_run([(o.connection.pk, o.connection.broker_slug, kw) for o, kw in jobs])
    for (outcome, _), result in zip(jobs, results, strict=True):
        try:
            _refresh_settle(outcome, result, now=now)
        except Exception as exc:  # noqa: BLE001 - one bad row must not sink the batch
            _row_crashed(outcome, exc, during="refresh")


def _refresh_settle(outcome: Outcome, result, *, now: datetime) -> None:
    conn = outcome.connection
    waiting = ""
    if result is PENDING or (not isinstance(result, BrokerError) and result.reason in (IN_PROGRESS, OUTCOME_UNKNOWN)):
        waiting = refresh_waiting_message(outcome.profile)
        if result is not PENDING and result.reason == OUTCOME_UNKNOWN:
            outcome.unknown_sent_at = result.connection.refresh_sent_at
        elif result is PENDING and conn.refresh_sent_at is not None and not refresh_claimed(conn, now=now):
            outcome.unknown_sent_at = conn.refresh_sent_at  # unknown when this batch read the row
    if waiting or (isinstance(result, BrokerError) and result.retryable):
        # While the token it has still lives, a slow or failing refresh does not degrade the
        # connection: check with that token, and the refresh is tried again later.
        if _token_usable(conn, now):
            _use_stored_token(outcome)
        elif waiting:
            outcome.waiting_for_refresh = waiting
            if outcome.unknown_sent_at is not None and conn.access_token_sealed:
                _use_stored_token(outcome)  # a probe: any answer shows the broker is answering again
                outcome.probe = True
        else:
            outcome.error = result
        return
    if isinstance(result, BrokerError):
        outcome.error = result
        return
    fresh = result.connection
    if result.reason == "inactive":
        outcome.error = BrokerError(errors.AUTH, "The connection is no longer active.", needs_reauth=True)
        conn.status = fresh.status
        return
    outcome.refreshed = outcome.refreshed or result.refreshed
    for name in (
        "access_token_sealed",
        "refresh_token_sealed",
        "access_expires_at",
        "refresh_expires_at",
        "reauth_deadline_at",
        "last_refreshed_at",
        "token_type",
        "token_meta",
    ):
        setattr(conn, name, getattr(fresh, name))
    _use_stored_token(outcome)


def _later_answers_record(outcomes: list[Outcome], *, sent_at: datetime) -> None:
    """Heartbeats the broker answered (any HTTP status) that were sent after an unknown
    refresh: that refresh has been processed or dropped. A probe's answer is not a check."""
    for outcome in outcomes:
        try:
            if outcome.http_status is not None:
                refresh_later_answer_record(
                    outcome.connection.pk, unknown_sent_at=outcome.unknown_sent_at, request_sent_at=sent_at
                )
        except Exception:  # noqa: BLE001 - the next check records it
            logger.exception(
                "connections.check.later_answer_failed", extra={"connection_id": str(outcome.connection.pk)}
            )
        if outcome.probe:
            outcome.ok, outcome.error, outcome.latency_ms, outcome.http_status = False, None, None, None


def _row_crashed(outcome: Outcome, exc: Exception, *, during: str) -> None:
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


@sensitive_variables()
def _heartbeat_many(outcomes: list[Outcome]) -> None:
    items = []
    for outcome in outcomes:
        profile, conn = outcome.profile, outcome.connection
        try:
            base = profile.hooks.api_base_url(profile, environment=conn.environment, token_meta=conn.token_meta or {})
            items.append(
                HeartbeatRequest(
                    key=outcome,
                    url=base.rstrip("/") + profile.heartbeat_path,
                    access_token=outcome.access_token,
                    token_type=conn.token_type or "Bearer",
                    token_invalid_statuses=profile.token_invalid_statuses,
                    broker_name=profile.name,
                    group=conn.broker_slug,
                )
            )
        except Exception as exc:  # noqa: BLE001 - one bad row must not sink the batch
            _row_crashed(outcome, exc, during="heartbeat")
    results = heartbeats_run(
        items,
        concurrency=int(engine_setting("CONCURRENCY")),
        timeout=float(engine_setting("HTTP_TIMEOUT")),
        per_group=broker_concurrency_per_lane(),
    )
    for result in results:
        outcome = result.key
        outcome.ok, outcome.error = result.ok, result.error
        outcome.latency_ms, outcome.http_status = result.latency_ms, result.http_status


def _profiles_attach(outcomes: list[Outcome]) -> None:
    """Each outcome gets its broker's profile (looked up once per broker and environment); a
    broker brokerlink no longer knows is that connection's error."""
    profiles: dict[tuple[str, str], BrokerProfile | None] = {}
    for outcome in outcomes:
        key = (outcome.connection.broker_slug, outcome.connection.environment)
        if key not in profiles:
            try:
                profiles[key] = connection_profile(outcome.connection)
            except LookupError:
                profiles[key] = None
        outcome.profile = profiles[key]
        if outcome.profile is None:
            outcome.error = BrokerError(errors.CONFIGURATION, "brokerlink no longer knows this broker.")


def _gate(outcomes: list[Outcome], *, now: datetime) -> list[Outcome]:
    """Ask each broker's circuit breaker; a blocked call is deferred, an open breaker lets one
    connection through as its probe. Returns the outcomes to check now."""
    live = [o for o in outcomes if o.error is None]
    breakers = circuit.breakers_load(o.connection.broker_slug for o in live)
    gates: dict[str, str] = {}
    for outcome in live:
        slug = outcome.connection.broker_slug
        if slug not in gates:
            gates[slug] = circuit.breaker_gate(breakers.get(slug), policy=outcome.profile.circuit, now=now)
            if gates[slug] == circuit.PROBE:
                gates[slug] = "probe-taken"
                continue  # this connection is the probe
        gate = gates[slug]
        if gate == circuit.BLOCKED:
            breaker = breakers[slug]
            outcome.deferred_until = max(breaker.next_probe_at or now, now + timedelta(seconds=1))
        elif gate == "probe-taken":
            # The probe's verdict decides; look again at the next sweep.
            outcome.deferred_until = now + timedelta(seconds=1)
    return [o for o in live if o.deferred_until is None]


def _refresh_expiring(active: list[Outcome], *, now: datetime) -> None:
    """Refresh what is expiring (or idle too long); the others use the token they have."""
    jobs = []
    for outcome in active:
        try:
            reason = refresh_due(outcome.connection, outcome.profile, now=now)
            if reason:
                jobs.append((outcome, {"reason": reason}))
            else:
                _use_stored_token(outcome)
        except Exception as exc:  # noqa: BLE001 - one bad row must not sink the batch
            _row_crashed(outcome, exc, during="token check")
    _refresh_many(jobs, now=now)
    for outcome in active:
        if outcome.error is None and not outcome.access_token and not outcome.waiting_for_refresh:
            outcome.error = BrokerError(errors.AUTH, "This connection has no usable token.", needs_reauth=True)


def _token_rejected(outcome: Outcome) -> bool:
    """The broker answered the heartbeat that the access token is not (or no longer) valid."""
    error = outcome.error
    return (
        error is not None
        and error.category == errors.AUTH
        and not error.needs_reauth
        and outcome.http_status is not None
    )


def _retry_rejected(active: list[Outcome]) -> None:
    """A heartbeat the broker answered 401: exactly one forced refresh, then one more heartbeat."""
    rejected = [o for o in active if _token_rejected(o)]
    if not rejected:
        return
    retry_jobs = [
        (o, {"reason": "rejected", "force": True, "rejected_access_sealed": o.access_sealed}) for o in rejected
    ]
    rejected_sealed = {id(o): o.access_sealed for o in rejected}
    for outcome in rejected:
        outcome.error = None
        outcome.access_token = ""
    _refresh_many(retry_jobs, now=timezone.now())
    for outcome in rejected:
        if outcome.error is None and outcome.waiting_for_refresh:
            continue
        if outcome.error is None and outcome.access_sealed == rejected_sealed[id(outcome)]:
            # The refresh could not run (still running elsewhere, or failing): the token
            # the broker just rejected is no answer.
            outcome.error = BrokerError(
                errors.AUTH, f"{outcome.profile.name} rejected the access token and it could not be refreshed yet."
            )
    again = [o for o in rejected if o.error is None and not o.waiting_for_refresh]
    _heartbeat_many(again)
    for outcome in again:
        if outcome.error is not None and outcome.error.category == errors.AUTH:
            outcome.error.needs_reauth = True


@sensitive_variables()
def connections_check(connections: list[Connection], *, now: datetime | None = None, owner: str = "") -> BatchStats:
    """Check these (already claimed) connections and write every result. Returns the stats."""
    now = now or timezone.now()
    stats = BatchStats()
    if not connections:
        return stats
    outcomes = [Outcome(connection=c) for c in connections]
    _profiles_attach(outcomes)
    active = _gate(outcomes, now=now)  # 1. gate
    _refresh_expiring(active, now=now)  # 2. refresh
    heartbeats_sent_at = timezone.now()  # 3. heartbeat (a probe too: any answer ends an unknown refresh's wait)
    _heartbeat_many([o for o in active if o.error is None and (not o.waiting_for_refresh or o.probe)])
    _later_answers_record([o for o in active if o.unknown_sent_at is not None], sent_at=heartbeats_sent_at)
    _retry_rejected(active)  # 4. 401
    close_old_connections()
    outcomes_write(outcomes, now=timezone.now(), owner=owner, stats=stats)  # 5. write
    return stats


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
    _row_crashed(outcome, exc, during="write")
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
            for outcome, decision in decisions:
                if decision.status != outcome.connection.status:
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
        return
    qn = db_connection.ops.quote_name
    pk = EngineState._meta.pk
    fields = [EngineState._meta.get_field(name) for name in WRITE_FIELDS]
    columns = [pk, *fields]
    db = connections[db_connection.alias]  # not the proxy: one lookup per field and row otherwise
    arrays = [_column_values(f, rows, db) for f in columns]
    unnest = ", ".join(f"%s::{f.db_type(db_connection)}[]" for f in columns)
    names = ", ".join(qn(f.column) for f in columns)
    sets = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" for f in fields)
    sql = (
        f"UPDATE {qn(EngineState._meta.db_table)} AS c SET {sets} "  # noqa: S608 - names from the model
        f"FROM unnest({unnest}) AS v({names}) WHERE c.{qn(pk.column)} = v.{qn(pk.column)}"
    )
    with db_connection.cursor() as cursor:
        cursor.execute(sql, arrays)


# --- manual actions (views, admin) -------------------------------------------------------


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

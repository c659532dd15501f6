"""Checking a batch of connections: make the token valid, call the heartbeat, record the outcome.

Used by the sweep and by the manual "check now" / "refresh now" services, so both follow
the same rules. Phases per batch (database work stays synchronous, HTTP is concurrent):

1. gate:      the broker's circuit breaker decides pass / probe / blocked (no call at all)
2. refresh:   tokens expiring within the profile's margin (or idle too long) are refreshed in a
              small thread pool, each single-flight under a row lock (engine.refresh)
3. heartbeat: aiohttp, bounded concurrency, per-request timeout (engine.heartbeat_client)
4. 401:       exactly one forced refresh, then one more heartbeat
5. write:     one transaction: status transitions (with events) only on change, bulk_update of
              the rows (releasing the lease), bulk_create of CheckResults, breaker bookkeeping
"""

from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import close_old_connections, transaction
from django.db import connection as db_connection
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.profile import BrokerProfile
from connections import errors
from connections.engine import circuit
from connections.engine.backoff import attempts_exhausted, backoff_delay
from connections.engine.conf import engine_setting
from connections.engine.health import health_inputs_for, health_score, quality_for
from connections.engine.heartbeat_client import HeartbeatRequest, heartbeats_run
from connections.engine.refresh import connection_profile, connection_refresh, refresh_due
from connections.errors import BrokerError
from connections.models import CheckResult, Connection, ConnectionEvent, ConnectionStatus
from connections.state import INACTIVE_STATUSES, connection_transition

logger = logging.getLogger(__name__)

WRITE_FIELDS = [
    "status",
    "status_changed_at",
    "next_check_at",
    "lease_until",
    "lease_owner",
    "last_check_at",
    "last_success_at",
    "consecutive_failures",
    "retry_attempt",
    "last_error_category",
    "last_error_message",
    "last_latency_ms",
    "health_score",
    "quality",
    "updated_at",
]
FAULT_CATEGORIES = {errors.NETWORK, errors.BROKER_FAULT}
# Spread healthy checks a little so a burst of new connections does not stay a burst.
INTERVAL_JITTER = 0.1
# Heartbeats use at most this share of a broker's per-user request budget.
RATE_LIMIT_SHARE = 0.1


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


def healthy_interval(profile: BrokerProfile) -> float:
    """Seconds between checks of a healthy connection: the profile's interval, stretched when
    the broker's rate limit is so tight that heartbeats would use a visible share of it."""
    interval = float(profile.heartbeat_interval_seconds)
    limit = profile.rate_limit
    if limit and limit.requests:
        interval = max(interval, limit.per_seconds / (limit.requests * RATE_LIMIT_SHARE))
    return interval


def _jittered(seconds: float) -> timedelta:
    return timedelta(seconds=seconds * random.uniform(1 - INTERVAL_JITTER, 1))


def _refresh_in_thread(connection_id, kwargs):
    try:
        return connection_refresh(connection_id, **kwargs)
    except BrokerError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - one bad row must not sink the batch
        logger.exception("connections.refresh.crashed", extra={"connection_id": str(connection_id)})
        return BrokerError(errors.UNEXPECTED, f"Refresh crashed ({type(exc).__name__}).")
    finally:
        db_connection.close()


def _refresh_many(jobs: list[tuple[Outcome, dict]]) -> None:
    """Run refreshes concurrently; each outcome gets its new token or its error."""
    if not jobs:
        return
    threads = max(1, min(int(engine_setting("REFRESH_THREADS")), len(jobs)))
    if threads == 1:
        results = [_refresh_one_inline(o.connection.pk, kw) for o, kw in jobs]
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refresh") as pool:
            results = list(pool.map(lambda job: _refresh_in_thread(job[0].connection.pk, job[1]), jobs))
    for (outcome, _), result in zip(jobs, results, strict=True):
        if isinstance(result, BrokerError):
            outcome.error = result
            continue
        fresh = result.connection
        if result.reason == "inactive":
            outcome.error = BrokerError(errors.AUTH, "The connection is no longer active.", needs_reauth=True)
            outcome.connection.status = fresh.status
            continue
        outcome.refreshed = outcome.refreshed or result.refreshed
        outcome.access_sealed = fresh.access_token_sealed
        outcome.access_token = fresh.access_token if fresh.access_token_sealed else ""
        for name in (
            "access_token_sealed",
            "refresh_token_sealed",
            "access_expires_at",
            "refresh_expires_at",
            "reauth_deadline_at",
            "last_refreshed_at",
            "token_type",
        ):
            setattr(outcome.connection, name, getattr(fresh, name))


def _refresh_one_inline(connection_id, kwargs):
    try:
        return connection_refresh(connection_id, **kwargs)
    except BrokerError as exc:
        return exc


@sensitive_variables()
def _heartbeat_many(outcomes: list[Outcome]) -> None:
    items = []
    for outcome in outcomes:
        profile, conn = outcome.profile, outcome.connection
        base = profile.hooks.api_base_url(profile, environment=conn.environment, token_meta=conn.token_meta or {})
        items.append(
            HeartbeatRequest(
                key=outcome,
                url=base.rstrip("/") + profile.heartbeat_path,
                access_token=outcome.access_token,
                token_type=conn.token_type or "Bearer",
                token_invalid_statuses=profile.token_invalid_statuses,
                broker_name=profile.name,
            )
        )
    results = heartbeats_run(
        items, concurrency=int(engine_setting("CONCURRENCY")), timeout=float(engine_setting("HTTP_TIMEOUT"))
    )
    for result in results:
        outcome = result.key
        outcome.ok, outcome.error = result.ok, result.error
        outcome.latency_ms, outcome.http_status = result.latency_ms, result.http_status


@sensitive_variables()
def connections_check(connections: list[Connection], *, now: datetime | None = None, owner: str = "") -> BatchStats:
    """Check these (already claimed) connections and write every result. Returns the stats."""
    now = now or timezone.now()
    stats = BatchStats()
    if not connections:
        return stats
    outcomes = [Outcome(connection=c) for c in connections]
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

    # 1. gate
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
    active = [o for o in live if o.deferred_until is None]

    # 2. refresh what is expiring (or idle too long)
    jobs = []
    for outcome in active:
        conn = outcome.connection
        reason = refresh_due(conn, outcome.profile, now=now)
        if reason:
            jobs.append((outcome, {"reason": reason}))
        else:
            outcome.access_sealed = conn.access_token_sealed
            outcome.access_token = conn.access_token if conn.access_token_sealed else ""
    _refresh_many(jobs)
    for outcome in active:
        if outcome.error is None and not outcome.access_token:
            outcome.error = BrokerError(errors.AUTH, "This connection has no usable token.", needs_reauth=True)

    # 3. heartbeat
    _heartbeat_many([o for o in active if o.error is None])

    # 4. 401: exactly one refresh, then one more heartbeat
    rejected = [
        o
        for o in active
        if o.error is not None
        and o.error.category == errors.AUTH
        and not o.error.needs_reauth
        and o.http_status is not None
    ]
    if rejected:
        retry_jobs = [
            (o, {"reason": "rejected", "force": True, "rejected_access_sealed": o.access_sealed}) for o in rejected
        ]
        for outcome in rejected:
            outcome.error = None
        _refresh_many(retry_jobs)
        again = [o for o in rejected if o.error is None]
        _heartbeat_many(again)
        for outcome in again:
            if outcome.error is not None and outcome.error.category == errors.AUTH:
                outcome.error.needs_reauth = True

    close_old_connections()
    outcomes_write(outcomes, now=timezone.now(), owner=owner, stats=stats)
    return stats


def _apply(outcome: Outcome, *, now: datetime, breaker_open_until: dict[str, datetime]) -> tuple[str, str, str]:
    """Set the row's engine fields from the outcome. Returns (to_status, category, message)."""
    conn, profile, error = outcome.connection, outcome.profile, outcome.error
    if profile is None:
        conn.last_error_category, conn.last_error_message = error.category, error.message
        conn.next_check_at = now + timedelta(days=1)
        return ConnectionStatus.DEGRADED, error.category, error.message
    if outcome.deferred_until is not None:
        conn.next_check_at = outcome.deferred_until
        message = f"{profile.name} is having an outage; brokerlink is waiting for it to recover."
        return ConnectionStatus.BROKER_OUTAGE, errors.BROKER_FAULT, message
    conn.last_check_at = now
    conn.last_latency_ms = outcome.latency_ms
    if outcome.ok:
        conn.consecutive_failures = conn.retry_attempt = 0
        conn.last_success_at = now
        conn.last_error_category, conn.last_error_message = "", ""
        conn.next_check_at = now + _jittered(healthy_interval(profile))
        return ConnectionStatus.CONNECTED, "", "Heartbeat passed."
    conn.consecutive_failures += 1
    conn.last_error_category, conn.last_error_message = error.category, error.message[:500]
    if error.needs_reauth:
        conn.next_check_at = now + timedelta(seconds=healthy_interval(profile))
        return ConnectionStatus.NEEDS_REAUTH, error.category, error.message
    if error.category == errors.CONFIGURATION:
        # The app's credentials, not this connection: wait for an administrator, slowly.
        conn.next_check_at = now + timedelta(seconds=profile.backoff.cap_seconds)
        return ConnectionStatus.DEGRADED, error.category, error.message
    if error.category == errors.RATE_LIMITED:
        wait = max(error.retry_after or 0.0, healthy_interval(profile))
        conn.next_check_at = now + timedelta(seconds=wait)
        keep = conn.status if conn.status not in (ConnectionStatus.CHECKING, ConnectionStatus.PENDING) else None
        return keep or ConnectionStatus.DEGRADED, error.category, error.message
    slug = conn.broker_slug
    if error.category in FAULT_CATEGORIES and slug in breaker_open_until:
        conn.next_check_at = breaker_open_until[slug]
        return ConnectionStatus.BROKER_OUTAGE, error.category, error.message
    conn.retry_attempt += 1
    if attempts_exhausted(profile.backoff, conn.retry_attempt):
        # Out of fast retries, but the grant may be fine (a long outage, a network problem):
        # the connection stays active, so the sweep keeps probing it at a slow cadence and
        # keeps its tokens refreshed, and the first passed check brings it back by itself.
        conn.next_check_at = now + timedelta(seconds=float(engine_setting("SLOW_PROBE_SECONDS")))
        return ConnectionStatus.DEGRADED, error.category, error.message
    conn.next_check_at = now + timedelta(seconds=backoff_delay(profile.backoff, conn.retry_attempt))
    return ConnectionStatus.DEGRADED, error.category, error.message


def outcomes_write(outcomes: list[Outcome], *, now: datetime, owner: str, stats: BatchStats) -> None:
    # Breakers first: an outage decides how this batch's failures are labelled.
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
        breaker = circuit.breaker_record(
            broker_slug=slug,
            successes=successes,
            faults=faults,
            policy=policies[slug],
            now=now,
            message=messages.get(slug, ""),
        )
        if breaker is not None and breaker.state != circuit.CLOSED:
            open_until[slug] = breaker.next_probe_at or now
        elif breaker is not None and successes and not faults:
            # Recovered: everyone waiting out the outage is due at the next sweep.
            Connection.objects.filter(
                broker_slug=slug, status=ConnectionStatus.BROKER_OUTAGE, next_check_at__gt=now, lease_owner=""
            ).update(next_check_at=now)

    ids = [o.connection.pk for o in outcomes]
    # Someone (a user disconnecting, an expired lease taken over) may have moved a row while we
    # were checking it: those rows are left alone.
    current = {
        pk: (status, lease)
        for pk, status, lease in Connection.objects.filter(pk__in=ids).values_list("pk", "status", "lease_owner")
    }
    mine = [o for o in outcomes if current.get(o.connection.pk) == (o.connection.status, owner)]
    stats.skipped += len(outcomes) - len(mine)
    inputs = health_inputs_for([o.connection.pk for o in mine], now=now)
    results = []
    with transaction.atomic():
        for outcome in mine:
            conn = outcome.connection
            to_status, category, message = _apply(outcome, now=now, breaker_open_until=open_until)
            if to_status != conn.status:
                kind = ConnectionEvent.Kind.STATUS_CHANGED
                connection_transition(
                    connection=conn, to_status=to_status, message=message, category=category, kind=kind, save=False
                )
            if outcome.deferred_until is not None:
                stats.deferred += 1
            else:
                stats.checked += 1
                stats.failed += 0 if outcome.ok else 1
                results.append(
                    CheckResult(
                        connection=conn,
                        checked_at=now,
                        ok=outcome.ok,
                        latency_ms=outcome.latency_ms,
                        http_status=outcome.http_status,
                        category="" if outcome.ok else outcome.error.category,
                    )
                )
            stats.refreshed += 1 if outcome.refreshed else 0
            if outcome.profile is not None:
                conn.health_score = health_score(
                    conn,
                    inputs[conn.pk],
                    ok=None if outcome.deferred_until else outcome.ok,
                    latency_ms=outcome.latency_ms,
                    baseline_ms=outcome.profile.baseline_latency_ms,
                    now=now,
                )
                conn.quality = quality_for(conn.health_score)
            conn.lease_owner, conn.lease_until = "", None
            conn.updated_at = now
        connections_write_engine_fields([o.connection for o in mine])
        CheckResult.objects.bulk_create(results, batch_size=1000)
    stats.outcomes.extend(mine)


def connections_write_engine_fields(rows: list[Connection]) -> None:
    """Write WRITE_FIELDS of these rows. On PostgreSQL one `UPDATE … FROM unnest(arrays)`
    statement (Django's bulk_update builds a CASE per field and row: ~10 ms of CPU per row
    at 15 fields, the largest cost of a sweep before); elsewhere bulk_update."""
    if not rows:
        return
    if db_connection.vendor != "postgresql":
        Connection.objects.bulk_update(rows, WRITE_FIELDS, batch_size=500)
        return
    qn = db_connection.ops.quote_name
    pk = Connection._meta.pk
    fields = [Connection._meta.get_field(name) for name in WRITE_FIELDS]
    columns = [pk, *fields]
    arrays = [[f.get_db_prep_save(getattr(row, f.attname), db_connection) for row in rows] for f in columns]
    unnest = ", ".join(f"%s::{f.db_type(db_connection)}[]" for f in columns)
    names = ", ".join(qn(f.column) for f in columns)
    sets = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" for f in fields)
    sql = (
        f"UPDATE {qn(Connection._meta.db_table)} AS c SET {sets} "  # noqa: S608 - names from the model
        f"FROM unnest({unnest}) AS v({names}) WHERE c.{qn(pk.column)} = v.{qn(pk.column)}"
    )
    with db_connection.cursor() as cursor:
        cursor.execute(sql, arrays)


# --- manual actions (views, admin) -------------------------------------------------------


class CheckBusy(Exception):
    """Another worker holds this connection's lease right now."""


def _claim_one(connection: Connection, *, owner: str, now: datetime, lease_seconds: float) -> bool:
    from django.db.models import Q

    return bool(
        Connection.objects.filter(pk=connection.pk)
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
    connection_transition(
        connection=connection, to_status=ConnectionStatus.CHECKING, actor=actor, message="Check requested."
    )
    stats = connections_check([connection], now=now, owner=owner)
    if stats.outcomes:
        return stats.outcomes[0]
    return Outcome(connection=connection)


def connection_refresh_now(connection: Connection, *, actor=None) -> Connection:
    """Refresh the tokens right away ("Refresh now"), single-flight like every refresh. A dead
    grant moves the connection to needs_reauth; other errors are re-raised for the caller to show."""
    try:
        result = connection_refresh(connection.pk, reason="manual", actor=actor, force=True)
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

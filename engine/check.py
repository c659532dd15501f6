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

The batch's shared data (Outcome, BatchStats) is engine.batch; phase 5, the write, is
engine.batch_write; "Check now" and "Refresh now" are engine.services.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import close_old_connections
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.profile import BrokerProfile
from connections import errors
from connections.errors import BrokerError
from connections.models import Connection
from engine import circuit
from engine.batch import BatchStats, Outcome, row_crashed
from engine.batch_write import outcomes_write
from engine.conf import engine_setting
from engine.heartbeat_client import HeartbeatRequest, heartbeats_run
from engine.refresh import (
    IN_PROGRESS,
    OUTCOME_UNKNOWN,
    connection_profile,
    refresh_claimed,
    refresh_due,
    refresh_later_answer_record,
    refresh_waiting_message,
)
from engine.refresh_runner import PENDING, refreshes_run

logger = logging.getLogger(__name__)

# An access token with less life than this is not used for a heartbeat while its refresh runs.
MIN_TOKEN_LIFE = timedelta(seconds=15)


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
            row_crashed(outcome, exc, during="refresh")


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
            row_crashed(outcome, exc, during="heartbeat")
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
            row_crashed(outcome, exc, during="token check")
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

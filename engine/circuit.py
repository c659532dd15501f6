"""Circuit breaker per broker, stored in the database so every worker shares it.

closed    -> checks run; broker_fault/network failures across the broker's connections count up.
open      -> after `threshold` such failures in a row: no calls to that broker; its connections
             show broker_outage (not the user's fault) until `next_probe_at`.
half_open -> after the cool-down one worker wins the probe (a conditional UPDATE) and checks a
             single connection: success closes the breaker, failure re-opens it for another
             cool-down. A prober that dies leaves `next_probe_at` in the past, so the next sweep
             probes again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction

from brokers.profile import CircuitPolicy
from engine.models import CircuitBreaker

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = CircuitBreaker.State.CLOSED, CircuitBreaker.State.OPEN, CircuitBreaker.State.HALF_OPEN
# Gate decisions for one broker in one batch.
PASS, PROBE, BLOCKED = "pass", "probe", "blocked"
PROBE_COOLDOWN_CAP_SECONDS = 1800


def probe_cooldown(policy: CircuitPolicy, probe_failures: int) -> float:
    return min(PROBE_COOLDOWN_CAP_SECONDS, policy.cooldown_seconds * 2 ** min(probe_failures, 16))


def breakers_load(slugs) -> dict[str, CircuitBreaker]:
    return {b.broker_slug: b for b in CircuitBreaker.objects.filter(broker_slug__in=set(slugs))}


def breaker_gate(breaker: CircuitBreaker | None, *, policy: CircuitPolicy, now: datetime) -> str:
    """PASS (closed), PROBE (this caller won the half-open probe) or BLOCKED."""
    if breaker is None or breaker.state == CLOSED:
        return PASS
    if breaker.next_probe_at and breaker.next_probe_at <= now:
        won = CircuitBreaker.objects.filter(pk=breaker.pk, state__in=[OPEN, HALF_OPEN], next_probe_at__lte=now).update(
            state=HALF_OPEN, next_probe_at=now + timedelta(seconds=policy.cooldown_seconds)
        )
        if won:
            breaker.state = HALF_OPEN
            breaker.next_probe_at = now + timedelta(seconds=policy.cooldown_seconds)
            logger.info("connections.circuit.probe", extra={"broker": breaker.broker_slug})
            return PROBE
        breaker.refresh_from_db()
        if breaker.state == CLOSED:
            return PASS
    return BLOCKED


def breaker_threshold(policy: CircuitPolicy, population: int | None) -> int:
    """Failures in a row that open the breaker. A broker with only one or two active
    connections could never gather five different failures before its users notice, so the
    threshold shrinks to the population (never below two: one blip is not an outage)."""
    if population is None:
        return policy.failure_threshold
    return max(1, min(policy.failure_threshold, max(2, population)))


def breaker_record(
    *,
    broker_slug: str,
    successes: int,
    faults: int,
    policy: CircuitPolicy,
    now: datetime,
    message: str = "",
    population: int | None = None,
) -> CircuitBreaker | None:
    """Fold one batch's outcomes for a broker into its breaker. Returns the breaker (None when
    there is no row and nothing to record). Any success closes it: a connect, a reconnect or a
    manual check that reached the broker counts like a sweep's check. `population` is how
    many active connections the broker has (see breaker_threshold)."""
    if not faults:
        if not successes:
            return None
        existing = CircuitBreaker.objects.filter(broker_slug=broker_slug).first()
        if existing is None or (existing.state == CLOSED and existing.failure_count == 0):
            return existing
    with transaction.atomic():
        breaker, _ = CircuitBreaker.objects.select_for_update().get_or_create(broker_slug=broker_slug)
        before = breaker.state
        if successes:
            breaker.state, breaker.failure_count, breaker.probe_failures = CLOSED, 0, 0
            breaker.opened_at = breaker.next_probe_at = None
        else:
            breaker.failure_count += faults
            breaker.last_error_message = message[:500]
            if breaker.state == HALF_OPEN:
                breaker.probe_failures += 1
            if breaker.state == HALF_OPEN or (
                breaker.state == CLOSED and breaker.failure_count >= breaker_threshold(policy, population)
            ):
                breaker.state = OPEN
                breaker.opened_at = breaker.opened_at if before == HALF_OPEN else now
                breaker.next_probe_at = now + timedelta(seconds=probe_cooldown(policy, breaker.probe_failures))
            elif breaker.state == OPEN:
                breaker.next_probe_at = max(breaker.next_probe_at or now, now)
        breaker.save()
    if before != breaker.state:
        logger.info("connections.circuit.changed", extra={"broker": broker_slug, "from": before, "to": breaker.state})
        if breaker.state == CLOSED:
            _outage_waiters_due(broker_slug, now=now)
    return breaker


def _outage_waiters_due(broker_slug: str, *, now: datetime) -> None:
    """The broker is back: everyone waiting out its outage is due at the next sweep."""
    from connections.models import ConnectionStatus
    from engine.models import EngineState

    EngineState.objects.filter(
        connection__broker_slug=broker_slug,
        connection__status=ConnectionStatus.BROKER_OUTAGE,
        next_check_at__gt=now,
        lease_owner="",
    ).update(next_check_at=now)


def circuit_reset(broker_slug: str, actor=None) -> bool:
    """Close a broker's breaker by hand (an administrator knows the outage is over).

    Connections waiting out the outage become due at the next sweep. Returns False when the
    breaker was already closed with nothing counted (safe to run twice)."""
    from django.utils import timezone

    now = timezone.now()
    changed = (
        CircuitBreaker.objects.filter(broker_slug=broker_slug)
        .exclude(state=CLOSED, failure_count=0, probe_failures=0)
        .update(state=CLOSED, failure_count=0, probe_failures=0, opened_at=None, next_probe_at=None, updated_at=now)
    )
    if changed:
        _outage_waiters_due(broker_slug, now=now)
        logger.info(
            "connections.circuit.reset",
            extra={"broker": broker_slug, "actor_id": getattr(actor, "pk", None)},
        )
    return bool(changed)


def broker_answered_record(sender, *, profile, now, **kwargs) -> None:
    """`connections.signals.broker_answered`: the broker just issued tokens on a connect or
    reconnect, so it is up (a stale open breaker must not override a fresh reconnect)."""
    breaker_record(broker_slug=profile.slug, successes=1, faults=0, policy=profile.circuit, now=now)

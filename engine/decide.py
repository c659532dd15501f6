"""What one check means for a connection: a pure function from what the check saw to the
connection's next status, error, next check and counters.

No ORM, no settings, no mutation: `decide` reads plain values and returns a frozen `Decision`,
which the batch write (engine.batch_write) applies to the row. The only randomness (the healthy
interval's jitter, exponential backoff) is drawn from the `rng` passed in, so tests pin it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from brokers.profile import BackoffPolicy, BrokerProfile
from connections import errors
from connections.errors import BrokerError
from connections.models import ConnectionStatus
from engine.backoff import attempts_exhausted, backoff_delay

FAULT_CATEGORIES = {errors.NETWORK, errors.BROKER_FAULT}
# Spread healthy checks a little so a burst of new connections does not stay a burst; small
# enough (with the sweep's look-ahead) that every check lands within 60 ± 6 s of the last.
INTERVAL_JITTER = 0.05
# A connection whose refresh is still running, with no usable token, is looked at again after this.
REFRESH_PENDING_RECHECK = timedelta(seconds=10)
# Heartbeats use at most this share of a broker's per-user request budget.
RATE_LIMIT_SHARE = 0.1
# A connection whose broker brokerlink no longer knows is looked at again after this.
UNKNOWN_BROKER_RECHECK = timedelta(days=1)
ERROR_MESSAGE_LENGTH = 500
# Statuses a check that decides nothing (still waiting, rate-limited) does not keep.
_TRANSIENT = (ConnectionStatus.CHECKING, ConnectionStatus.PENDING)


@dataclass(frozen=True)
class Observed:
    """What the check saw. `deferred_until`: an open breaker blocked the call (none was made);
    `waiting_for_refresh`: a refresh is still running and no token could be used (the text says why)."""

    ok: bool = False
    error: BrokerError | None = None
    latency_ms: int | None = None
    deferred_until: datetime | None = None
    waiting_for_refresh: str = ""


@dataclass(frozen=True)
class RowState:
    """The connection's engine fields before the check."""

    status: str
    consecutive_failures: int = 0
    retry_attempt: int = 0
    last_check_at: datetime | None = None
    last_success_at: datetime | None = None
    last_latency_ms: int | None = None
    last_error_category: str = ""
    last_error_message: str = ""


@dataclass(frozen=True)
class Policy:
    """The broker's rules for one connection."""

    broker_name: str
    healthy_interval: float  # seconds between checks of a healthy connection
    backoff: BackoffPolicy
    slow_probe_seconds: float  # after the retry budget is used up


@dataclass(frozen=True)
class Decision:
    """The row's engine fields after the check, and the transition to write when `status`
    differs from the row's (with `category` and `message` for its event)."""

    status: str
    category: str
    message: str
    # None: not checked any more (a status the sweep never checks, docs/engine.md#data-model).
    next_check_at: datetime | None
    consecutive_failures: int
    retry_attempt: int
    last_check_at: datetime | None
    last_success_at: datetime | None
    last_latency_ms: int | None
    last_error_category: str
    last_error_message: str


def healthy_interval(profile: BrokerProfile) -> float:
    """Seconds between checks of a healthy connection: the profile's interval, stretched when
    the broker's rate limit is so tight that heartbeats would use a visible share of it."""
    interval = float(profile.heartbeat_interval_seconds)
    limit = profile.rate_limit
    if limit and limit.requests:
        interval = max(interval, limit.per_seconds / (limit.requests * RATE_LIMIT_SHARE))
    return interval


def policy_for(profile: BrokerProfile, *, slow_probe_seconds: float) -> Policy:
    return Policy(
        broker_name=profile.name,
        healthy_interval=healthy_interval(profile),
        backoff=profile.backoff,
        slow_probe_seconds=slow_probe_seconds,
    )


def unchanged(row: RowState, *, now: datetime) -> Decision:
    """The row as it is, looked at again `now`: what each rule below starts from."""
    return Decision(
        status=row.status,
        category="",
        message="",
        next_check_at=now,
        consecutive_failures=row.consecutive_failures,
        retry_attempt=row.retry_attempt,
        last_check_at=row.last_check_at,
        last_success_at=row.last_success_at,
        last_latency_ms=row.last_latency_ms,
        last_error_category=row.last_error_category,
        last_error_message=row.last_error_message,
    )


def decide(
    outcome: Observed,
    row: RowState,
    *,
    now: datetime,
    policy: Policy | None,
    breaker_open_until: datetime | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """The decision for one check. `policy` None: brokerlink no longer knows the broker (the
    outcome's error says so); `breaker_open_until`: the broker's circuit breaker is open (or
    half-open) until then, so a network or broker fault is the broker's outage, not this
    connection's."""
    kept = unchanged(row, now=now)
    error = outcome.error
    if policy is None:
        return replace(
            kept,
            status=ConnectionStatus.DEGRADED,
            category=error.category,
            message=error.message,
            next_check_at=now + UNKNOWN_BROKER_RECHECK,
            last_error_category=error.category,
            last_error_message=error.message,
        )
    if outcome.waiting_for_refresh:
        return _waiting(kept, outcome.waiting_for_refresh, now=now)
    if outcome.deferred_until is not None:
        message = f"{policy.broker_name} is having an outage; brokerlink is waiting for it to recover."
        return replace(
            kept,
            status=ConnectionStatus.BROKER_OUTAGE,
            category=errors.BROKER_FAULT,
            message=message,
            next_check_at=outcome.deferred_until,
        )
    checked = replace(kept, last_check_at=now, last_latency_ms=outcome.latency_ms)
    rng = rng or random
    if outcome.ok:
        interval = policy.healthy_interval * rng.uniform(1 - INTERVAL_JITTER, 1)
        return replace(
            checked,
            status=ConnectionStatus.CONNECTED,
            message="Heartbeat passed.",
            next_check_at=now + timedelta(seconds=interval),
            consecutive_failures=0,
            retry_attempt=0,
            last_success_at=now,
            last_error_category="",
            last_error_message="",
        )
    return _failed(checked, error, now=now, policy=policy, breaker_open_until=breaker_open_until, rng=rng)


def _waiting(kept: Decision, why: str, *, now: datetime) -> Decision:
    """Nothing was checked: the access token has run out and the refresh is not answered yet
    (engine.rotation). The connection says so plainly and is looked at again soon."""
    return replace(
        kept,
        status=ConnectionStatus.DEGRADED,
        category=errors.NETWORK,
        message=why,
        next_check_at=now + REFRESH_PENDING_RECHECK,
        last_error_category=errors.NETWORK,
        last_error_message=why[:ERROR_MESSAGE_LENGTH],
    )


def _failed(
    checked: Decision,
    error: BrokerError,
    *,
    now: datetime,
    policy: Policy,
    breaker_open_until: datetime | None,
    rng,
) -> Decision:
    failed = replace(
        checked,
        status=ConnectionStatus.DEGRADED,
        category=error.category,
        message=error.message,
        consecutive_failures=checked.consecutive_failures + 1,
        last_error_category=error.category,
        last_error_message=error.message[:ERROR_MESSAGE_LENGTH],
    )
    if error.needs_reauth:
        # Only a reconnect brings it back (which schedules its check): until then it is off the
        # sweep's index.
        return replace(failed, status=ConnectionStatus.NEEDS_REAUTH, next_check_at=None)
    if error.category == errors.CONFIGURATION:
        # The app's credentials, not this connection: wait for an administrator, slowly.
        return replace(failed, next_check_at=now + timedelta(seconds=policy.backoff.cap_seconds))
    if error.category == errors.RATE_LIMITED:
        wait = max(error.retry_after or 0.0, policy.healthy_interval)
        status = checked.status if checked.status not in _TRANSIENT else ConnectionStatus.DEGRADED
        return replace(failed, status=status, next_check_at=now + timedelta(seconds=wait))
    if error.category in FAULT_CATEGORIES and breaker_open_until is not None:
        return replace(failed, status=ConnectionStatus.BROKER_OUTAGE, next_check_at=breaker_open_until)
    attempt = checked.retry_attempt + 1
    if attempts_exhausted(policy.backoff, attempt):
        # Out of fast retries, but the grant may be fine (a long outage, a network problem):
        # the connection stays active, so the sweep keeps probing it at a slow cadence and
        # keeps its tokens refreshed, and the first passed check brings it back by itself.
        delay = policy.slow_probe_seconds
    else:
        delay = backoff_delay(policy.backoff, attempt, rng=rng)
    return replace(failed, retry_attempt=attempt, next_check_at=now + timedelta(seconds=delay))

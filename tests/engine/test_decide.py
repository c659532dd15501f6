"""engine.decide: what one check means for a connection, as tables of (what the row was, what
the check saw) -> (status, next check, counters, error shown). No database: milliseconds."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from brokers.profile import BackoffPolicy, RateLimit
from connections import errors
from connections.errors import BrokerError
from connections.models import ConnectionStatus as S
from engine.backoff import MIN_DELAY_SECONDS
from engine.decide import (
    ERROR_MESSAGE_LENGTH,
    INTERVAL_JITTER,
    REFRESH_PENDING_RECHECK,
    UNKNOWN_BROKER_RECHECK,
    Decision,
    Observed,
    Policy,
    RowState,
    decide,
    healthy_interval,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
OPEN_UNTIL = NOW + timedelta(seconds=90)
EXPONENTIAL = BackoffPolicy(kind="exponential", base_seconds=30, cap_seconds=1800, max_attempts=8)
POLICY = Policy(broker_name="Sandbox", healthy_interval=60.0, backoff=EXPONENTIAL, slow_probe_seconds=300.0)


class Highest:
    """An rng that always draws the top of the range: no jitter, the full backoff ceiling."""

    def uniform(self, low, high):
        return high


class Lowest:
    def uniform(self, low, high):
        return low


def failing(category, message="It failed.", **kw) -> Observed:
    return Observed(ok=False, error=BrokerError(category, message, **kw), latency_ms=None)


def row(status=S.CONNECTED, **fields) -> RowState:
    return RowState(status=status, **fields)


def run(outcome, before=None, *, policy=POLICY, breaker=None, rng=None) -> Decision:
    return decide(outcome, before or row(), now=NOW, policy=policy, breaker_open_until=breaker, rng=rng or Highest())


# --- a passed check ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.CONNECTED, S.DEGRADED, S.BROKER_OUTAGE, S.CHECKING, S.PENDING])
def test_a_passed_check_connects_and_resets_the_counters(status):
    before = row(status, consecutive_failures=4, retry_attempt=3, last_error_category="network", last_error_message="x")
    decision = run(Observed(ok=True, latency_ms=42), before)
    assert (decision.status, decision.category, decision.message) == (S.CONNECTED, "", "Heartbeat passed.")
    assert (decision.consecutive_failures, decision.retry_attempt) == (0, 0)
    assert (decision.last_error_category, decision.last_error_message) == ("", "")
    assert decision.last_check_at == decision.last_success_at == NOW
    assert decision.last_latency_ms == 42


@pytest.mark.parametrize(("rng", "seconds"), [(Highest(), 60.0), (Lowest(), 60.0 * (1 - INTERVAL_JITTER))])
def test_the_next_healthy_check_is_the_interval_less_a_little_jitter(rng, seconds):
    assert run(Observed(ok=True, latency_ms=42), rng=rng).next_check_at == NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("interval", "limit", "expected"),
    [
        (60, None, 60.0),  # no published limit
        (60, RateLimit(requests=120, per_seconds=60), 60.0),  # heartbeats are well under 10 % of it
        (60, RateLimit(requests=10, per_seconds=60), 60.0),  # exactly 10 %
        (60, RateLimit(requests=1, per_seconds=60), 600.0),  # stretched to stay at 10 %
        (30, RateLimit(requests=2, per_seconds=3600), 18000.0),
        (60, RateLimit(requests=0, per_seconds=60), 60.0),  # a zero limit means "not published"
    ],
)
def test_a_tight_rate_limit_stretches_the_healthy_interval(interval, limit, expected):
    profile = SimpleNamespace(heartbeat_interval_seconds=interval, rate_limit=limit)
    assert healthy_interval(profile) == expected


# --- backoff -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "retry_before", "rng", "delay"),
    [
        (EXPONENTIAL, 0, Highest(), 30),  # first retry: up to base
        (EXPONENTIAL, 1, Highest(), 60),
        (EXPONENTIAL, 4, Highest(), 480),
        (EXPONENTIAL, 6, Highest(), 1800),  # 30 * 2**6 = 1920, capped
        (EXPONENTIAL, 0, Lowest(), MIN_DELAY_SECONDS),  # full jitter never goes below the floor
        (BackoffPolicy(kind="linear", base_seconds=20, cap_seconds=100, max_attempts=9), 2, Lowest(), 60),
        (BackoffPolicy(kind="linear", base_seconds=20, cap_seconds=100, max_attempts=9), 7, Lowest(), 100),
        (BackoffPolicy(kind="fixed", base_seconds=45, cap_seconds=100, max_attempts=9), 5, Lowest(), 45),
        (BackoffPolicy(kind="fixed", base_seconds=2, cap_seconds=100, max_attempts=9), 0, Lowest(), MIN_DELAY_SECONDS),
    ],
)
@pytest.mark.parametrize("category", [errors.NETWORK, errors.BROKER_FAULT, errors.UNEXPECTED])
def test_a_failure_backs_off_by_the_brokers_policy(backoff, retry_before, rng, delay, category):
    policy = dataclasses.replace(POLICY, backoff=backoff)
    before = row(S.CONNECTED, consecutive_failures=retry_before, retry_attempt=retry_before)
    decision = run(failing(category, "Timed out."), before, policy=policy, rng=rng)
    assert (decision.status, decision.category, decision.message) == (S.DEGRADED, category, "Timed out.")
    assert decision.retry_attempt == retry_before + 1
    assert decision.consecutive_failures == retry_before + 1
    assert decision.next_check_at == NOW + timedelta(seconds=delay)
    assert decision.last_check_at == NOW and decision.last_success_at is None


@pytest.mark.parametrize(("retry_before", "slow"), [(6, False), (7, True), (20, True)])
def test_out_of_retries_the_connection_stays_active_and_is_probed_slowly(retry_before, slow):
    decision = run(failing(errors.NETWORK), row(S.DEGRADED, retry_attempt=retry_before))
    assert decision.status == S.DEGRADED  # never given up: the first passed check brings it back
    assert decision.retry_attempt == retry_before + 1
    probe = NOW + timedelta(seconds=POLICY.slow_probe_seconds)
    assert (decision.next_check_at == probe) is slow


def test_the_error_shown_is_cut_to_the_stored_length_but_the_event_keeps_it_whole():
    message = "m" * (ERROR_MESSAGE_LENGTH + 50)
    decision = run(failing(errors.NETWORK, message))
    assert decision.last_error_message == message[:ERROR_MESSAGE_LENGTH]
    assert decision.message == message


# --- the broker's circuit breaker ----------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "outage"),
    [
        (errors.NETWORK, True),
        (errors.BROKER_FAULT, True),
        (errors.UNEXPECTED, False),  # a broker answering nonsense is not down
        (errors.AUTH, False),
        (errors.RATE_LIMITED, False),
        (errors.CONFIGURATION, False),
    ],
)
def test_with_the_breaker_open_a_fault_is_the_brokers_outage(category, outage):
    decision = run(failing(category), row(S.CONNECTED, retry_attempt=2), breaker=OPEN_UNTIL)
    assert (decision.status == S.BROKER_OUTAGE) is outage
    if outage:
        assert decision.next_check_at == OPEN_UNTIL
        assert decision.retry_attempt == 2  # the broker's outage does not use up this connection's retries
        assert decision.consecutive_failures == 1


def test_a_call_the_breaker_blocked_changes_nothing_but_the_next_check():
    before = row(S.CONNECTED, consecutive_failures=1, retry_attempt=1, last_check_at=NOW - timedelta(minutes=1))
    deferred = NOW + timedelta(seconds=30)
    decision = run(Observed(deferred_until=deferred), before)
    assert (decision.status, decision.category) == (S.BROKER_OUTAGE, errors.BROKER_FAULT)
    assert decision.message == "Sandbox is having an outage; brokerlink is waiting for it to recover."
    assert decision.next_check_at == deferred
    assert (decision.consecutive_failures, decision.retry_attempt) == (1, 1)
    assert decision.last_check_at == NOW - timedelta(minutes=1)  # no check was made


# --- rate limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "kept", "wait"),
    [
        (S.CONNECTED, 120.0, S.CONNECTED, 120),  # Retry-After honoured, the status stays
        (S.CONNECTED, 5.0, S.CONNECTED, 60),  # never sooner than the healthy interval
        (S.CONNECTED, None, S.CONNECTED, 60),
        (S.DEGRADED, 300.0, S.DEGRADED, 300),
        (S.BROKER_OUTAGE, None, S.BROKER_OUTAGE, 60),
        (S.CHECKING, None, S.DEGRADED, 60),  # "checking" is not a status to stay in
        (S.PENDING, 90.0, S.DEGRADED, 90),
    ],
)
def test_a_rate_limited_check_waits_and_keeps_the_status(status, retry_after, kept, wait):
    decision = run(failing(errors.RATE_LIMITED, "Slow down.", retry_after=retry_after), row(status, retry_attempt=2))
    assert decision.status == kept
    assert decision.next_check_at == NOW + timedelta(seconds=wait)
    assert decision.retry_attempt == 2 and decision.consecutive_failures == 1
    assert (decision.last_error_category, decision.last_error_message) == (errors.RATE_LIMITED, "Slow down.")


# --- refresh outcomes and dead grants ------------------------------------------------------


@pytest.mark.parametrize("status", [S.CONNECTED, S.DEGRADED, S.BROKER_OUTAGE, S.CHECKING, S.PENDING])
def test_waiting_for_a_refresh_with_no_usable_token_says_so_and_looks_again_soon(status):
    # The access token has run out and the refresh is unanswered (issue 23): whatever the
    # connection showed, it now says plainly what it waits for; nothing was checked.
    why = "Waiting for Sandbox to answer a token refresh." + "." * ERROR_MESSAGE_LENGTH
    before = row(status, consecutive_failures=2, retry_attempt=2, last_error_category="auth", last_error_message="old")
    decision = run(Observed(waiting_for_refresh=why), before)
    assert decision.status == S.DEGRADED
    assert decision.next_check_at == NOW + REFRESH_PENDING_RECHECK
    assert (decision.consecutive_failures, decision.retry_attempt) == (2, 2)
    assert decision.last_check_at is None
    assert (decision.category, decision.message) == (errors.NETWORK, why)
    assert decision.last_error_message == why[:ERROR_MESSAGE_LENGTH]


@pytest.mark.parametrize("breaker", [None, OPEN_UNTIL])
@pytest.mark.parametrize("status", [S.CONNECTED, S.DEGRADED, S.CHECKING])
def test_a_dead_grant_needs_the_person_and_is_not_checked_again(status, breaker):
    error = failing(errors.AUTH, "The broker refused the refresh token.", needs_reauth=True)
    decision = run(error, row(status, retry_attempt=3), breaker=breaker)
    assert (decision.status, decision.category) == (S.NEEDS_REAUTH, errors.AUTH)
    assert decision.next_check_at is None  # until a reconnect schedules it
    assert decision.retry_attempt == 3


def test_a_configuration_error_waits_for_an_administrator_at_the_backoff_cap():
    decision = run(failing(errors.CONFIGURATION, "invalid_client"), row(S.CONNECTED, retry_attempt=1))
    assert (decision.status, decision.category) == (S.DEGRADED, errors.CONFIGURATION)
    assert decision.next_check_at == NOW + timedelta(seconds=EXPONENTIAL.cap_seconds)
    assert decision.retry_attempt == 1


def test_a_broker_brokerlink_no_longer_knows_is_looked_at_daily():
    outcome = failing(errors.CONFIGURATION, "brokerlink no longer knows this broker.")
    decision = run(outcome, row(S.CONNECTED), policy=None)
    assert (decision.status, decision.category) == (S.DEGRADED, errors.CONFIGURATION)
    assert decision.next_check_at == NOW + UNKNOWN_BROKER_RECHECK
    assert decision.last_error_message == "brokerlink no longer knows this broker."


# --- purity --------------------------------------------------------------------------------


def test_the_decision_is_a_value_and_the_same_inputs_decide_the_same():
    before = row(S.DEGRADED, consecutive_failures=2, retry_attempt=2)
    outcome = failing(errors.BROKER_FAULT)
    first, second = run(outcome, before), run(outcome, before)
    assert first == second
    assert before == row(S.DEGRADED, consecutive_failures=2, retry_attempt=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.status = S.CONNECTED  # type: ignore[misc]

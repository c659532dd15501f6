"""How the engine reacts to each kind of broker answer, against the sandbox over HTTP."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from connections.errors import BrokerError
from connections.models import ConnectionEvent, ConnectionStatus
from engine.models import CircuitBreaker
from engine.refresh import connection_refresh
from engine.services import connection_check_now, connection_refresh_now
from engine.sweep import sweep_run
from tests.engine.conftest import time_passes
from tests.engine.history import stored_checks

pytestmark = pytest.mark.django_db(transaction=True)


def test_invalid_grant_on_refresh_needs_reauth_after_exactly_one_attempt(world):
    conn = world.connection(expires_in=30)
    world.faults(refresh_invalid_grant=True)
    before = world.counters()
    sweep_run()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.NEEDS_REAUTH
    assert conn.last_error_category == "auth"
    assert world.counters()["token_requests"] - before["token_requests"] == 1
    for _ in range(5):  # hours pass: never another call
        time_passes(3600)
        sweep_run()
    after = world.counters()
    assert after["token_requests"] - before["token_requests"] == 1
    assert after["account_calls"] == before["account_calls"]


def test_revoked_grant_401_gets_one_refresh_then_needs_reauth(world):
    conn = world.connection()
    world.sandbox.revoke_all(world.client_id)
    before = world.counters()
    sweep_run()
    conn.refresh_from_db()
    after = world.counters()
    assert conn.status == ConnectionStatus.NEEDS_REAUTH
    assert after["account_calls"] - before["account_calls"] == 1
    assert after["token_requests"] - before["token_requests"] == 1
    assert conn.events.filter(kind=ConnectionEvent.Kind.REFRESH_FAILED).count() == 1


def test_rate_limit_honours_retry_after(world):
    conn = world.connection()
    world.faults(rate_limit=600)
    started = timezone.now()
    sweep_run()
    conn.refresh_from_db()
    assert conn.last_error_category == "rate_limited"
    assert conn.next_check_at >= started + timedelta(seconds=600)
    assert conn.retry_attempt == 0


def test_a_broken_connection_costs_a_bounded_number_of_calls(world):
    world.connection()
    world.faults(error_5xx_rate=1.0)
    before = world.counters()["account_calls"]
    per_hour = []
    for _hour in range(3):
        start = world.counters()["account_calls"]
        for _minute in range(60):  # one sweep a minute, simulated
            time_passes(60)
            sweep_run()
        per_hour.append(world.counters()["account_calls"] - start)
    assert world.counters()["account_calls"] - before <= 20, per_hour
    assert per_hour[-1] <= 3, per_hour  # once settled: a few calls an hour, not one a minute
    breaker = CircuitBreaker.objects.get(broker_slug="sandbox")
    assert breaker.state in (CircuitBreaker.State.OPEN, CircuitBreaker.State.HALF_OPEN)


def test_5xx_backs_off_then_fails_when_the_breaker_stays_closed(world):
    # One failure at a broker with five active connections (four not due) stays below the
    # breaker's threshold: the failing connection backs off on its own.
    broken = world.connection()
    for _ in range(4):
        world.connection(next_check_at=timezone.now() + timedelta(hours=1))
    world.faults(html_errors=True)
    sweep_run()
    broken.refresh_from_db()
    assert broken.last_error_category == "broker_fault"
    assert broken.status == ConnectionStatus.DEGRADED and broken.retry_attempt == 1
    assert broken.next_check_at >= timezone.now() + timedelta(seconds=4)
    assert CircuitBreaker.objects.get(broker_slug="sandbox").state == CircuitBreaker.State.CLOSED


def test_a_broker_with_two_connections_is_recognised_as_down(world):
    # RFC-style small deployments: two connections failing together are an outage, not two
    # unlucky connections (the default threshold of five could never be reached in one sweep).
    first, second = world.connection(), world.connection()
    world.faults(outage=True)
    sweep_run()
    for conn in (first, second):
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.BROKER_OUTAGE, conn.last_error_message
    assert CircuitBreaker.objects.get(broker_slug="sandbox").state == CircuitBreaker.State.OPEN


def test_html_with_a_success_status_is_an_unexpected_answer_not_a_pass(world):
    conn = world.connection()
    world.faults(html_errors=True, html_status=200)
    sweep_run()
    conn.refresh_from_db()
    assert conn.last_error_category == "unexpected"
    assert conn.status == ConnectionStatus.DEGRADED and conn.retry_attempt == 1
    assert "instead of JSON" in conn.last_error_message


def test_refresh_is_single_flight_across_threads(world):
    conn = world.connection(expires_in=30)
    before = world.counters()
    results, barrier = [], threading.Barrier(4)

    def refresh():
        barrier.wait()
        try:
            results.append(connection_refresh(conn.pk, reason="test").refreshed)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = world.counters()
    assert sorted(results) == [False, False, False, True]
    assert after["refreshes"] - before["refreshes"] == 1
    assert after["rotated_reuses"] == 0


def test_check_now_and_refresh_now(world, user):
    conn = world.connection()
    outcome = connection_check_now(conn, actor=user)
    conn.refresh_from_db()
    assert outcome.ok and conn.status == ConnectionStatus.CONNECTED
    statuses = list(conn.events.order_by("created_at", "id").values_list("to_status", flat=True))
    assert statuses[-2:] == [ConnectionStatus.CHECKING, ConnectionStatus.CONNECTED]
    old_expiry = conn.access_expires_at
    connection_refresh_now(conn, actor=user)
    conn.refresh_from_db()
    assert conn.access_expires_at > old_expiry
    world.faults(refresh_invalid_grant=True)
    with pytest.raises(BrokerError):
        connection_refresh_now(conn, actor=user)
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.NEEDS_REAUTH
    assert len(stored_checks(conn)) == 1

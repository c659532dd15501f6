"""Heartbeat cycles end to end, the production path: beat's tick and its lanes on a real Celery
worker (tests/engine/cycle.py), PostgreSQL, and the sandbox broker over HTTP. Two workers and
two beats trying to do anything twice: test_never_twice.py."""

from __future__ import annotations

import os
import signal

import pytest
from django.utils import timezone

from connections.models import Connection, ConnectionEvent, ConnectionStatus
from engine.models import CircuitBreaker, EngineState
from tests.engine.conftest import time_passes
from tests.engine.cycle import run_one_cycle, run_one_cycle_in_process
from tests.engine.history import stored_checks
from tests.support import log_text, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_cycle_on_a_worker_refreshes_an_expiring_token_and_checks_both(world, worker):
    expiring = world.connection(expires_in=60)  # inside the sandbox's 300 s margin
    fresh = world.connection()
    before = world.counters()
    with worker():
        run = run_one_cycle()
    assert run.checked == 2 and run.lanes == run.lanes_finished == 1
    expiring.refresh_from_db()
    fresh.refresh_from_db()
    after = world.counters()
    assert after["refreshes"] - before["refreshes"] == 1
    assert after["rotated_reuses"] == 0
    assert expiring.status == ConnectionStatus.CONNECTED
    assert expiring.access_expires_at > timezone.now() + timezone.timedelta(minutes=10)
    assert expiring.events.filter(kind=ConnectionEvent.Kind.REFRESHED).count() == 1
    assert fresh.events.filter(kind=ConnectionEvent.Kind.REFRESHED).count() == 0
    for conn in (expiring, fresh):
        assert conn.lease_owner == "" and conn.lease_until is None
        assert conn.next_check_at > timezone.now() + timezone.timedelta(seconds=40)
        # One check of this grant: "not enough data yet" (HEALTH_MIN_CHECKS), not a number.
        assert conn.health_score is None and conn.quality == ""
        assert [c.ok for c in stored_checks(conn)] == [True]


def test_a_worker_killed_mid_check_leaves_no_stuck_lease(world, worker):
    conn = world.connection()
    world.faults(stall_seconds=30)
    calls = world.counters()["account_calls"]
    with worker() as cluster:
        from engine.tasks import heartbeat_tick

        wait_for(lambda: " ready." in log_text(cluster.workers[0]), timeout=60, what="the worker ready")
        heartbeat_tick.apply_async()  # beat's tick: its lane claims the connection
        wait_for(
            lambda: EngineState.objects.filter(pk=conn.pk).exclude(lease_owner="").exists(),
            timeout=60,
            what="the worker claimed the connection",
        )
        # The broker counts the heartbeat before it stalls: the check is now stuck there.
        wait_for(lambda: world.counters()["account_calls"] > calls, timeout=30, what="the heartbeat reached the broker")
        os.killpg(cluster.workers[0].pid, signal.SIGKILL)
        cluster.workers[0].wait(timeout=10)
    conn.refresh_from_db()
    assert conn.lease_owner  # the dead worker's lease is still there...
    assert not stored_checks(conn)
    world.faults(stall_seconds=0)
    wait_for(lambda: Connection.objects.get(pk=conn.pk).lease_until < timezone.now(), timeout=10, what="lease expiry")
    run = run_one_cycle_in_process()  # ...until it expires by itself and the next cycle checks the connection
    conn.refresh_from_db()
    assert run.checked == 1
    assert conn.lease_owner == "" and conn.status == ConnectionStatus.CONNECTED
    assert [c.ok for c in stored_checks(conn)] == [True]


def test_outage_opens_the_breaker_then_recovery_closes_it_within_a_cycle(world, worker, settings):
    connections = [world.connection() for _ in range(6)]  # default threshold: 5 failures
    world.faults(outage=True)
    with worker():
        run_one_cycle()
        breaker = CircuitBreaker.objects.get(broker_slug="sandbox")
        assert breaker.state == CircuitBreaker.State.OPEN
        for conn in connections:
            conn.refresh_from_db()
            assert conn.status == ConnectionStatus.BROKER_OUTAGE, conn.last_error_message
            assert conn.retry_attempt == 0  # not the user's fault: no progress toward "failed"
        calls = world.counters()["account_calls"]
        run_one_cycle()  # still cooling down: nobody calls the broker
        assert world.counters()["account_calls"] == calls

        world.faults(outage=False)
        time_passes(60)  # the cool-down is over
        run_one_cycle()  # the half-open probe succeeds and closes the breaker
        breaker.refresh_from_db()
        assert breaker.state == CircuitBreaker.State.CLOSED
        time_passes(1.1)  # the stored times a second on, as the old wall-clock pause did
        run_one_cycle()  # the next cycle resumes everyone
    for conn in connections:
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.CONNECTED
    assert world.counters()["account_calls"] - calls == 6


def test_a_stopped_broker_is_an_outage_too(own_world):
    world = own_world  # pauses or stops the broker process: a sandbox of its own
    connections = [world.connection() for _ in range(5)]
    world.sandbox.stop()
    run = run_one_cycle_in_process()
    assert run.checked == 5
    assert CircuitBreaker.objects.get(broker_slug="sandbox").state == CircuitBreaker.State.OPEN
    for conn in connections:
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.BROKER_OUTAGE
        assert conn.last_error_category == "network"
    world.sandbox.start()

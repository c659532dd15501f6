"""Grant safety with real Celery workers: two workers and the manual actions racing on one
rotating grant, and a worker killed after it sent a refresh."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from connections.engine.check import CheckBusy, connection_check_now, connection_refresh_now
from connections.engine.refresh_runner import refreshes_wait_idle
from connections.engine.sweep import sweep_run
from connections.errors import BrokerError
from connections.models import Connection, ConnectionStatus
from tests.engine.conftest import FAST_ENGINE_ENV, time_passes
from tests.support import wait_until

pytestmark = pytest.mark.slow

ROUNDS = 100


def _in_thread(fn, errors: list) -> threading.Thread:
    def run():
        try:
            fn()
        except (CheckBusy, BrokerError):
            pass  # busy, or "a refresh is already running": both are honest answers
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            db_connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_two_workers_check_now_and_refresh_now_racing_spend_each_refresh_token_once(world, celery_cluster):
    conn = world.connection()
    before = world.counters()
    env = {
        "SANDBOX_BASE_URL": world.sandbox.url,
        **FAST_ENGINE_ENV,
        "HEARTBEAT_INTERVAL_SECONDS": "0.3",  # beat sends a sweep every 0.3 s: both workers busy
        "BROKERLINK_ENGINE_REFRESH_WAIT_SECONDS": "2",
    }
    manual_refreshes = 0
    errors: list = []
    with celery_cluster(workers=2, beats=1, env=env):
        for round_number in range(ROUNDS):
            # The token falls due (a 15-minute token with 60 s left; the refresh margin is relative
            # to the lifetime): every path below now wants to refresh it.
            Connection.objects.filter(pk=conn.pk).update(
                access_expires_at=timezone.now() + timedelta(seconds=60),
                last_refreshed_at=timezone.now() - timedelta(seconds=840),
                next_check_at=timezone.now(),
            )
            threads = [_in_thread(lambda: connection_check_now(Connection.objects.get(pk=conn.pk)), errors)]
            if round_number % 2:
                manual_refreshes += 1
                threads.append(_in_thread(lambda: connection_refresh_now(Connection.objects.get(pk=conn.pk)), errors))
            for thread in threads:
                thread.join(timeout=60)
            assert refreshes_wait_idle(timeout=30)
            wait_until(
                lambda: (
                    (row := Connection.objects.get(pk=conn.pk)).access_expires_at
                    > timezone.now() + timedelta(minutes=5)
                    and not row.refresh_claim_owner
                ),
                timeout=30,
                message=f"round {round_number}: the due token refreshed",
            )
    assert not errors, errors
    after = world.counters()
    assert after["rotated_reuses"] == 0
    spent = after["refreshes"] - before["refreshes"]
    # One refresh per due token; a "Refresh now" may add one (it is asked for explicitly).
    assert ROUNDS <= spent <= ROUNDS + manual_refreshes, spent
    # The grant is alive at the end: the stored refresh token is the live one.
    conn.refresh_from_db()
    assert connection_refresh_now(conn).access_token
    outcome = connection_check_now(Connection.objects.get(pk=conn.pk))
    assert outcome.ok and world.counters()["rotated_reuses"] == 0


def test_a_worker_killed_after_sending_a_refresh(world, celery_cluster, settings):
    """Measured, not hoped: a worker killed after its refresh request went out. The broker
    (stalled) processes the request after the worker died, so the rotated token is lost with
    the worker. brokerlink keeps checking with the access token it has, waits two refresh
    deadlines, then resends once on purpose; the strict broker sees reuse, and the user is told
    exactly that (Needs you: reconnect)."""
    deadline = 3
    settings.ENGINE_REFRESH_DEADLINE_SECONDS = deadline
    conn = world.connection(expires_in=200)
    env = {
        "SANDBOX_BASE_URL": world.sandbox.url,
        **FAST_ENGINE_ENV,
        "BROKERLINK_ENGINE_REFRESH_DEADLINE_SECONDS": str(deadline),
        "BROKERLINK_ENGINE_REFRESH_WAIT_SECONDS": "0.5",
    }
    world.sandbox.pause()
    try:
        with celery_cluster(workers=1, beats=0, env=env) as cluster:
            from connections.tasks import heartbeat_sweep

            heartbeat_sweep.apply_async()
            wait_until(
                lambda: Connection.objects.filter(pk=conn.pk, refresh_sent_at__isnull=False).exists(),
                timeout=60,
                message="the worker sent the refresh",
            )
            time.sleep(0.3)
            os.killpg(cluster.workers[0].pid, signal.SIGKILL)
            killed_at = time.monotonic()
            cluster.workers[0].wait(timeout=10)
    finally:
        world.sandbox.resume()
    wait_until(lambda: world.counters()["refreshes"] >= 1, timeout=30, message="the broker processed the request")
    assert world.counters()["rotated_reuses"] == 0
    # While the outcome is unknown nothing is resent, and the access token it has keeps working.
    time_passes(120)
    sweep_run()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.CONNECTED, conn.last_error_message
    assert world.counters()["rotated_reuses"] == 0
    # After two deadlines (the first request can no longer be answered) one deliberate resend.
    sent_at = conn.refresh_sent_at
    wait_until(lambda: timezone.now() > sent_at + timedelta(seconds=2 * deadline + 5.5), timeout=30)
    time_passes(120)
    sweep_run()
    assert refreshes_wait_idle(timeout=30)
    conn.refresh_from_db()
    told_after = time.monotonic() - killed_at
    if conn.status != ConnectionStatus.NEEDS_REAUTH:
        time_passes(120)
        sweep_run()
        conn.refresh_from_db()
    assert world.counters()["rotated_reuses"] == 1
    assert conn.status == ConnectionStatus.NEEDS_REAUTH
    assert "earlier refresh that got no answer probably used it" in conn.last_error_message
    print(f"worker killed after sending: user told to reconnect {told_after:.1f} s later (deadline {deadline} s)")

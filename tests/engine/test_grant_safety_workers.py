"""Grant safety with a real Celery worker killed after it sent a refresh (the production path:
beat's tick and its lanes). Two workers and the manual actions racing on one rotating grant:
test_never_twice.py (check_now, refresh_now)."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Connection, ConnectionStatus
from engine.refresh_runner import refreshes_wait_idle
from tests.engine.conftest import FAST_ENGINE_ENV, time_passes
from tests.engine.cycle import run_one_cycle_in_process
from tests.support import bytes_waiting_at, wait_for

pytestmark = pytest.mark.slow


def test_a_worker_killed_after_sending_a_refresh(own_world, celery_cluster, settings):
    """Measured, not hoped: a worker killed after its refresh request went out. The broker
    (stalled) processes the request after the worker died, so the rotated token is lost with
    the worker. brokerlink keeps checking with the access token it has, waits two refresh
    deadlines, then resends once on purpose; the strict broker sees reuse, and the user is told
    exactly that (Needs you: reconnect)."""
    world = own_world  # pauses or stops the broker process: a sandbox of its own
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
            from engine.tasks import heartbeat_tick

            heartbeat_tick.apply_async()  # beat's tick: its lane refreshes the due token first
            wait_for(
                lambda: Connection.objects.filter(pk=conn.pk, refresh_sent_at__isnull=False).exists(),
                timeout=60,
                what="the worker is sending the refresh",
            )
            # The refresh request has reached the (paused) broker: bytes wait unread on its socket.
            wait_for(lambda: bytes_waiting_at(world.sandbox.port), timeout=30, what="the refresh reached the broker")
            os.killpg(cluster.workers[0].pid, signal.SIGKILL)
            killed_at = time.monotonic()
            cluster.workers[0].wait(timeout=10)
    finally:
        world.sandbox.resume()
    wait_for(lambda: world.counters()["refreshes"] >= 1, timeout=30, what="the broker processed the request")
    assert world.counters()["rotated_reuses"] == 0
    # While the outcome is unknown nothing is resent, and the access token it has keeps working.
    time_passes(120)
    run_one_cycle_in_process()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.CONNECTED, conn.last_error_message
    assert world.counters()["rotated_reuses"] == 0
    # After two deadlines (the first request can no longer be answered) one deliberate resend.
    sent_at = conn.refresh_sent_at
    # The deadlines are compared with the stored send time: real time has to pass here.
    wait_for(lambda: timezone.now() > sent_at + timedelta(seconds=2 * deadline + 5.5), timeout=30, what="2 deadlines")
    time_passes(120)
    run_one_cycle_in_process()
    assert refreshes_wait_idle(timeout=30)
    conn.refresh_from_db()
    told_after = time.monotonic() - killed_at
    if conn.status != ConnectionStatus.NEEDS_REAUTH:
        time_passes(120)
        run_one_cycle_in_process()
        conn.refresh_from_db()
    assert world.counters()["rotated_reuses"] == 1
    assert conn.status == ConnectionStatus.NEEDS_REAUTH
    assert "earlier refresh that got no answer probably used it" in conn.last_error_message
    print(f"worker killed after sending: user told to reconnect {told_after:.1f} s later (deadline {deadline} s)")

"""Rotating refresh tokens nobody declared, with real Celery workers and beat: a worker killed
after it sent a refresh, and two workers ticking through a broker stall. Same broker and
server as test_rotation_unknown.py (the docs' minimal YAML on the strict sandbox)."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from connections.models import Connection, ConnectionEvent, ConnectionStatus
from engine.models import EngineState, SweepRun
from tests.engine.conftest import FAST_ENGINE_ENV, time_passes
from tests.engine.rotation_world import acme_fixture, row, ticks_until  # noqa: F401 - the `acme` fixture
from tests.support import bytes_waiting_at, wait_for

pytestmark = pytest.mark.slow


def claimed_so_far() -> int:
    """Connections claimed by every lane so far (each batch adds to its tick's row)."""
    return SweepRun.objects.aggregate(n=Sum("claimed"))["n"] or 0


def worker_env(world, settings, **extra) -> dict:
    return {
        "SANDBOX_BASE_URL": world.sandbox.url,
        "BROKERS_FILE": settings.BROKERS_FILE,
        **FAST_ENGINE_ENV,
        "BROKERLINK_ENGINE_HTTP_TIMEOUT": "2",
        "BROKERLINK_ENGINE_REFRESH_WAIT_SECONDS": "0.5",
        **extra,
    }


def test_a_worker_killed_after_sending_a_refresh_to_a_stalled_broker(acme, celery_cluster, settings):
    """The rotated token's only copy dies with the worker: what is measured is that nothing is
    resent while the broker may still process the request, and how the loss is told."""
    deadline = 3
    settings.ENGINE_REFRESH_DEADLINE_SECONDS = deadline
    conn = acme.connection(expires_in=200)
    env = worker_env(acme, settings, BROKERLINK_ENGINE_REFRESH_DEADLINE_SECONDS=str(deadline))
    acme.sandbox.pause()
    try:
        with celery_cluster(workers=1, beats=0, env=env) as cluster:
            from engine.tasks import heartbeat_tick

            heartbeat_tick.apply_async()
            wait_for(
                lambda: Connection.objects.filter(pk=conn.pk, refresh_sent_at__isnull=False).exists(),
                timeout=60,
                what="the worker sent the refresh",
            )
            # The claim is written before the request leaves: kill only once it reached the
            # stalled broker (bytes waiting unread on its connections).
            wait_for(
                lambda: bytes_waiting_at(acme.sandbox.port), timeout=30, what="the refresh reached the broker"
            )
            os.killpg(cluster.workers[0].pid, signal.SIGKILL)
            killed_at = time.monotonic()
            cluster.workers[0].wait(timeout=10)
        sent_at = row(conn).refresh_sent_at
    finally:
        acme.sandbox.resume()
    wait_for(lambda: acme.counters()["refreshes"] >= 1, timeout=30, what="the broker processed the request")
    # Until the broker answers a request sent after the refresh, nothing is resent; the access
    # token it has keeps working. Then one deliberate resend: reuse, and the user is told.
    ticks_until(
        lambda: row(conn).status == ConnectionStatus.NEEDS_REAUTH, timeout=60, message="the loss told to the user"
    )
    told_after = time.monotonic() - killed_at
    conn = row(conn)
    events = ConnectionEvent.objects.filter(connection=conn).values_list("message", flat=True)
    assert any("answered a request sent after it" in m for m in events)
    assert "earlier refresh that got no answer probably used it" in conn.last_error_message
    numbers = acme.report(
        "worker killed after sending",
        conn,
        **{"user told after": f"{told_after:.1f} s", "sent at": f"{sent_at:%H:%M:%S}"},
    )
    assert numbers["refresh tokens reused"] == 1, "the one deliberate resend"
    assert numbers["grants lost"] == 1


def test_two_workers_ticking_through_a_stall_spend_each_refresh_token_once(acme, celery_cluster, settings):
    # A stall past the broker read timeout (10 s by default, 3 s here), well inside the refresh
    # deadline (180 s by default, 20 s here).
    read_timeout = 3
    stall_seconds = read_timeout + 1
    connections = [acme.connection(expires_in=200) for _ in range(4)]
    ids = [c.pk for c in connections]
    before = acme.counters()
    env = worker_env(
        acme,
        settings,
        HEARTBEAT_INTERVAL_SECONDS="1",
        BROKER_READ_TIMEOUT_SECONDS=str(read_timeout),
        BROKERLINK_ENGINE_REFRESH_DEADLINE_SECONDS="20",
    )
    batches_during_stall = 0
    with celery_cluster(workers=2, beats=1, env=env):
        acme.sandbox.pause()
        stalled_at = time.monotonic()
        try:
            # Every connection is due again after each finished lane: both workers keep taking
            # lanes, see the claim of the one refresh out per connection, and send nothing more.
            while time.monotonic() - stalled_at < stall_seconds:
                done = claimed_so_far()
                EngineState.objects.filter(pk__in=ids).update(next_check_at=timezone.now())
                wait_for(lambda done=done: claimed_so_far() > done, timeout=30, what="a lane checked a batch")
                batches_during_stall += 1
            out = Connection.objects.filter(pk__in=ids, refresh_sent_at__isnull=False).count()
        finally:
            acme.sandbox.resume()
        assert out == len(ids), "one refresh out per connection during the stall"

        def all_refreshed() -> bool:
            time_passes(61)  # the broker's circuit breaker, opened by the stall, probes again
            return (
                Connection.objects.filter(
                    pk__in=ids,
                    refresh_sent_at__isnull=True,
                    access_expires_at__gt=timezone.now() + timedelta(seconds=50),
                    status=ConnectionStatus.CONNECTED,
                ).count()
                == len(ids)
            )

        wait_for(all_refreshed, timeout=90, interval=0.5, what="every connection refreshed and connected")
    after = acme.counters()
    numbers = acme.report(
        f"two workers, stall {stall_seconds} s",
        row(connections[0]),
        **{
            "batches checked during the stall": batches_during_stall,
            "refreshes for 4 due tokens": after["refreshes"] - before["refreshes"],
        },
    )
    assert numbers["refresh tokens reused"] == 0 and numbers["grants lost"] == 0
    assert after["refreshes"] - before["refreshes"] == len(ids)

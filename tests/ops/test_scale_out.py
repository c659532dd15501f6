"""Two workers and two beats on one private Redis, for several beat cycles.

Both workers consume; both beats run, each visible in /health/ready/; the duplicate ticks a
second beat sends are harmless because what they trigger is idempotent (here the worker
heartbeat upsert; the engine's sweep claims connections with leases).
"""

import subprocess
import time

import pytest
import redis
from django.utils import timezone

from ops.health import check_beat, check_workers
from ops.models import ServiceHeartbeat
from tests.support import PYTHON, ROOT, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_two_workers_and_two_beats_run_together(private_redis, celery_cluster):
    started = timezone.now()
    env = {"REDIS_URL": private_redis.url, "HEARTBEAT_INTERVAL_SECONDS": "2"}
    with celery_cluster(workers=2, beats=2, env=env) as cluster:
        # Both beats record themselves (one row per process).
        wait_until(
            lambda: ServiceHeartbeat.objects.filter(kind="beat", last_seen_at__gte=started).count() == 2,
            timeout=30,
            message="both beats alive",
        )
        # Work sent by the app is shared: with prefetch 1 and slow-ish tasks, both workers take some.
        code = "from ops.tasks import beat_tick\nfor _ in range(40): beat_tick.delay()"
        subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=cluster.env, check=True, timeout=60)
        wait_until(
            lambda: (
                set(
                    ServiceHeartbeat.objects.filter(kind="worker", last_seen_at__gte=started).values_list(
                        "name", flat=True
                    )
                )
                >= set(cluster.worker_names)
            ),
            timeout=40,
            message="both workers consuming",
        )
        # Several cycles of the beats' own schedule (ops-beat-tick every 15 s) keep both workers fresh.
        queue = redis.Redis.from_url(private_redis.url)
        wait_until(lambda: queue.llen("celery") == 0, timeout=30, message="manual ticks drained")
        time.sleep(2)  # the last prefetched ones finish
        after_manual = timezone.now()
        wait_until(
            lambda: ServiceHeartbeat.objects.filter(kind="worker", last_seen_at__gt=after_manual).exists(),
            timeout=40,
            interval=1,
            message="a beat-scheduled tick executed",
        )
        assert all(p.poll() is None for p in cluster.workers + cluster.beats), "a process died"

    # One row per process, however many duplicate ticks the two beats sent.
    rows = ServiceHeartbeat.objects.filter(last_seen_at__gte=started).exclude(name__startswith="marker:")
    assert sorted(rows.values_list("kind", flat=True)) == ["beat", "beat", "worker", "worker"]
    assert check_workers().ok and check_beat().ok


def test_two_workers_and_two_beats_never_check_a_connection_twice_in_a_cycle(private_redis, celery_cluster, world):
    """Both beats send a sweep every second; over several check cycles each connection is
    checked exactly once per cycle.

    The sandbox profile's interval is 60 s and there is no per-broker interval override, so a
    cycle is made by the engine tests' time machine (every stored next_check_at moved back by
    the interval) instead of waiting a minute; between cycles both beats keep ticking for a
    settle window in which no connection may be checked again.
    """
    from connections.engine.checkstore import rings_for
    from connections.models import ConnectionStatus
    from tests.engine.conftest import FAST_ENGINE_ENV, time_passes

    def checked(ids) -> int:
        return sum(len(ring.checks) for ring in rings_for(ids).values())

    connections = [world.connection() for _ in range(8)]
    ids = [c.pk for c in connections]
    cycles, settle = 3, 4.0
    env = {
        "REDIS_URL": private_redis.url,
        "HEARTBEAT_INTERVAL_SECONDS": "1",
        "SANDBOX_BASE_URL": world.sandbox.url,
        **FAST_ENGINE_ENV,
    }
    before = world.counters()
    with celery_cluster(workers=2, beats=2, env=env, concurrency=2) as cluster:
        for cycle in range(1, cycles + 1):
            if cycle > 1:
                time_passes(60)  # the interval has passed: every connection is due again
            wait_until(
                lambda n=cycle: checked(ids) >= n * len(ids),
                timeout=40,
                interval=0.2,
                message=f"cycle {cycle} checked every connection",
            )
            time.sleep(settle)  # both beats keep sending sweeps: none may check again this cycle
            assert checked(ids) == cycle * len(ids)
        assert all(p.poll() is None for p in cluster.workers + cluster.beats), "a process died"
        assert ServiceHeartbeat.objects.filter(kind="beat").count() >= 2
        # Many more sweeps ran than there were cycles: the extra ones found nothing due.
        from connections.engine.models import SweepRun

        assert SweepRun.objects.count() > 3 * cycles

    after = world.counters()
    grants_before = {g["id"]: g["account_calls"] for g in before["grants"]}
    for grant in after["grants"]:
        calls = grant["account_calls"] - grants_before.get(grant["id"], 0)
        assert abs(calls - cycles) <= 1, f"grant {grant['id']}: {calls} heartbeats in {cycles} cycles"
    for conn in connections:
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.CONNECTED
        times = sorted(c.checked_at for c in rings_for([conn.pk])[conn.pk].checks)
        assert len(times) == cycles
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= settle * 0.9, f"{conn.pk} checked {gaps} s apart"

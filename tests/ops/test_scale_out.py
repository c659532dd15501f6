"""Two workers and two beats on one private Redis, for several beat cycles.

Both workers consume; both beats run, each visible in /health/ready/; the duplicate ticks a
second beat sends are harmless because what they trigger is idempotent (here the worker
heartbeat upsert; the engine's sweep claims connections with leases).
"""

import subprocess
import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from ops.health import check_beat, check_workers
from ops.models import ServiceHeartbeat
from tests.engine.history import stored_checks
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


def _checks(ids) -> int:
    """Checks stored for these connections (each one's check log holds its recent checks)."""
    from connections.engine.checkstore import rings_for

    return sum(len(ring.checks) for ring in rings_for(ids).values())


def _worker_log(worker_name: str, since: float) -> str:
    """What a cluster worker has logged so far (celery_cluster writes it under VAR_DIR)."""
    from pathlib import Path

    from django.conf import settings

    logs = (Path(settings.VAR_DIR) / "test-logs").glob(f"worker-{worker_name.split('@')[0]}-*.log")
    return "".join(p.read_text(errors="replace") for p in logs if p.stat().st_mtime >= since)


def _lane_claims(worker_name: str, since: float) -> dict[int, int]:
    """{tick SweepRun id: connections claimed} by the lanes one worker ran, from its log
    (Celery logs each task's return value; lanes return their tick's id and their claims)."""
    import ast
    import re

    claims: dict[int, int] = {}
    pattern = re.compile(r"connections\.tasks\.heartbeat_lane\[[^\]]+\] succeeded in [0-9.]+s: (\{[^}]*\})")
    for match in pattern.finditer(_worker_log(worker_name, since)):
        result = ast.literal_eval(match.group(1))
        claims[result["run_id"]] = claims.get(result["run_id"], 0) + result["claimed"]
    return claims


def test_one_beat_and_two_workers_share_each_cycle_and_never_check_a_connection_twice(
    private_redis, celery_cluster, world
):
    """The fan-out: one beat ticks every second, each tick sends at most two lanes, and both
    workers check connections of the same cycle. Each connection is checked once per cycle
    (brokerlink's records and the broker's own count per grant agree). Then one worker is
    SIGKILLed mid-cycle: the batch it held is retaken by the other after its 3 s lease."""
    import os
    import signal

    from connections.engine.models import SweepRun
    from connections.models import Connection, ConnectionStatus
    from tests.engine.conftest import FAST_ENGINE_ENV, time_passes

    started = time.time()
    connections = [world.connection() for _ in range(16)]
    ids = [c.pk for c in connections]
    Connection.objects.filter(pk__in=ids).update(next_check_at=timezone.now() + timedelta(hours=1))
    world.faults(latency_ms=300)  # each batch of 3 takes ≥ 0.3 s: the two lanes overlap
    env = {
        "REDIS_URL": private_redis.url,
        "HEARTBEAT_INTERVAL_SECONDS": "1",
        "SANDBOX_BASE_URL": world.sandbox.url,
        **FAST_ENGINE_ENV,
        "BROKERLINK_ENGINE_BATCH_SIZE": "3",
        "BROKERLINK_ENGINE_LANE_CONNECTIONS": "4",
        "BROKERLINK_ENGINE_SWEEP_LANES": "2",
    }
    cycles, settle = 2, 3.0
    before = {g["id"]: g["account_calls"] for g in world.counters()["grants"]}

    def checks() -> int:
        return _checks(ids)

    with celery_cluster(workers=2, beats=1, env=env, concurrency=1) as cluster:
        wait_until(
            lambda: all(" ready." in _worker_log(name, started) for name in cluster.worker_names),
            timeout=60,
            message="both workers ready",
        )
        Connection.objects.filter(pk__in=ids).update(next_check_at=timezone.now())
        for cycle in range(1, cycles + 1):
            if cycle > 1:
                time_passes(60)  # the interval has passed: every connection is due again
            wait_until(lambda n=cycle: checks() >= n * len(ids), timeout=40, interval=0.2, message=f"cycle {cycle}")
            time.sleep(settle)  # the beat keeps ticking: nothing may be checked again this cycle
            assert checks() == cycle * len(ids)

        # Every cycle's checks were shared by both workers, under one SweepRun per cycle.
        w1, w2 = (_lane_claims(name, started) for name in cluster.worker_names)
        shared = [run for run in set(w1) & set(w2) if w1[run] and w2[run]]
        assert len(shared) >= cycles, f"claims per cycle: w1 {w1}, w2 {w2}"
        for run_id in shared:
            run = SweepRun.objects.get(pk=run_id)
            assert run.checked == w1[run_id] + w2[run_id] == len(ids)
            assert run.lanes == run.lanes_started == run.lanes_finished == 2
            assert run.finished_at is not None
        # Ticks with nothing due sent no lane (the beat ticked many more times than there were cycles).
        assert SweepRun.objects.filter(lanes=0).count() >= 2

        # A worker killed while it holds a batch: the other worker takes over after the lease.
        world.faults(latency_ms=2000)  # slow answers (inside the 5 s timeout): a batch is held 2 s
        time_passes(60)
        doomed = cluster.workers[0].pid  # its process group: the worker and its pool child

        def held_by_doomed() -> bool:
            for owner in (
                Connection.objects.filter(pk__in=ids).exclude(lease_owner="").values_list("lease_owner", flat=True)
            ):
                try:
                    if os.getpgid(int(owner.split(":")[1])) == doomed:
                        return True
                except (ProcessLookupError, ValueError, IndexError):
                    continue
            return False

        wait_until(held_by_doomed, timeout=20, interval=0.05, message="the doomed worker claimed a batch")
        os.killpg(doomed, signal.SIGKILL)
        cluster.workers[0].wait(timeout=10)
        wait_until(lambda: checks() >= (cycles + 1) * len(ids), timeout=30, interval=0.2, message="the cycle finished")
        time.sleep(settle)
        assert checks() == (cycles + 1) * len(ids)
        assert cluster.workers[1].poll() is None and cluster.beats[0].poll() is None

    for conn in connections:
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.CONNECTED and conn.lease_owner == ""
        assert len(stored_checks(conn)) == cycles + 1
    # The broker's own count: once per connection per cycle before the kill; the killed batch's
    # stalled heartbeats may have reached it once more, nothing else.
    after = {g["id"]: g["account_calls"] for g in world.counters()["grants"]}
    calls = sorted(after[g] - before.get(g, 0) for g in after)
    assert len(calls) == len(ids) and calls[0] == cycles + 1 and calls[-1] <= cycles + 2, calls

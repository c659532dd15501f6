"""Two workers and two beats on one private Redis, for several beat cycles.

Both workers consume; both beats run, each visible in /health/ready/; the duplicate ticks a
second beat sends are harmless because what they trigger is idempotent (here the worker
heartbeat upsert). That the engine's cycles never check or refresh anything twice with two
workers and two beats: tests/engine/test_never_twice.py.
"""

import subprocess

import pytest
import redis
from django.utils import timezone

from ops.health import check_beat, check_workers
from ops.models import ServiceHeartbeat
from tests.support import PYTHON, ROOT, log_text, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_two_workers_and_two_beats_run_together(private_redis, celery_cluster):
    started = timezone.now()
    env = {"REDIS_URL": private_redis.url, "HEARTBEAT_INTERVAL_SECONDS": "2"}
    with celery_cluster(workers=2, beats=2, env=env) as cluster:
        # Both beats record themselves (one row per process).
        wait_for(
            lambda: ServiceHeartbeat.objects.filter(kind="beat", last_seen_at__gte=started).count() == 2,
            timeout=30,
            what="both beats alive",
        )
        # Work sent by the app is shared: with prefetch 1 and slow-ish tasks, both workers take some.
        code = "from ops.tasks import beat_tick\nfor _ in range(40): beat_tick.delay()"
        subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=cluster.env, check=True, timeout=60)
        wait_for(
            lambda: (
                set(
                    ServiceHeartbeat.objects.filter(kind="worker", last_seen_at__gte=started).values_list(
                        "name", flat=True
                    )
                )
                >= set(cluster.worker_names)
            ),
            timeout=40,
            what="both workers consuming",
        )
        # Several cycles of the beats' own schedule (ops-beat-tick every 15 s) keep both workers fresh.
        queue = redis.Redis.from_url(private_redis.url)
        wait_for(lambda: queue.llen("celery") == 0, timeout=30, what="manual ticks drained")

        def beat_sent() -> int:
            return sum(log_text(beat).count("Sending due task ops-beat-tick") for beat in cluster.beats)

        # Two ticks the beats send after the manual ones were all taken: the second one's effect
        # comes after every manual tick has run.
        sent = beat_sent()
        wait_for(lambda: beat_sent() >= sent + 2, timeout=60, what="the beats sent two more ticks")
        after_manual = timezone.now()
        wait_for(
            lambda: ServiceHeartbeat.objects.filter(kind="worker", last_seen_at__gt=after_manual).exists(),
            timeout=40,
            interval=1,
            what="a beat-scheduled tick executed",
        )
        assert all(p.poll() is None for p in cluster.workers + cluster.beats), "a process died"

    # One row per process, however many duplicate ticks the two beats sent.
    rows = ServiceHeartbeat.objects.filter(last_seen_at__gte=started).exclude(name__startswith="marker:")
    assert sorted(rows.values_list("kind", flat=True)) == ["beat", "beat", "worker", "worker"]
    assert check_workers().ok and check_beat().ok

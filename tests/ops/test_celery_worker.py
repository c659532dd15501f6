"""A real Celery worker executes a task the app sends, on Redis and on the embedded broker."""

import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from ops.models import ServiceHeartbeat
from tests.support import PYTHON, ROOT, log_text, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def send_from_app(env, marker):
    """Send the task the way the app does: a Django process configured from the environment."""
    code = f"from ops.tasks import record_marker; record_marker.delay({marker!r})"
    subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


def marker_seen(marker):
    return ServiceHeartbeat.objects.filter(kind="worker", name=f"marker:{marker}").exists()


def worker_lost_redis(cluster):
    """Wait until the worker has noticed the outage (Celery's consumer says so in its log)."""
    # Celery's consumer says one of these, depending on where the outage meets it.
    signs = ("Connection to broker lost", "Cannot connect to redis", "Error while reading from")
    wait_for(
        lambda: any(sign in log_text(cluster.workers[0]) for sign in signs),
        timeout=120,
        what="the worker logs that it lost Redis",
    )


def test_worker_on_the_embedded_broker_executes_a_task_sent_by_the_app(celery_cluster, tmp_path):
    env = {"REDIS_URL": "", "BROKERLINK_VAR_DIR": str(tmp_path)}
    with celery_cluster(workers=1, beats=0, env=env) as cluster:
        send_from_app(cluster.env, "on-filesystem")
        wait_for(lambda: marker_seen("on-filesystem"), timeout=40, what="worker ran record_marker via files")
    assert (tmp_path / "celery-broker").is_dir()


def test_worker_on_redis_executes_a_task_sent_by_the_app_and_resumes_by_itself_when_redis_returns(
    private_redis, celery_cluster
):
    """A task the app sends over Redis runs on the worker; Redis goes away and comes back, and
    the next task runs too, nobody restarting the worker."""
    with celery_cluster(workers=1, beats=0, env={"REDIS_URL": private_redis.url}) as cluster:
        send_from_app(cluster.env, "before-outage")
        wait_for(lambda: marker_seen("before-outage"), timeout=40, what="worker ran the first task")
        private_redis.stop()
        worker_lost_redis(cluster)
        private_redis.start()
        send_from_app(cluster.env, "after-outage")
        wait_for(lambda: marker_seen("after-outage"), timeout=60, what="worker reconnected and ran the task")
        assert cluster.workers[0].poll() is None


def test_beat_and_worker_resume_by_themselves_when_redis_returns(private_redis, celery_cluster):
    """Beat keeps its schedule through a Redis outage: after Redis returns, its next tick
    reaches the worker without anyone restarting either process."""
    env = {"REDIS_URL": private_redis.url, "OPS_BEAT_TICK_SECONDS": "1"}

    def worker_seen_after(moment):
        return ServiceHeartbeat.objects.filter(kind="worker", name__startswith="w1@", last_seen_at__gt=moment).exists()

    with celery_cluster(workers=1, beats=1, env=env) as cluster:
        wait_for(lambda: worker_seen_after(timezone.now() - timedelta(days=1)), timeout=40, what="first tick")
        private_redis.stop()
        worker_lost_redis(cluster)
        private_redis.start()
        back_at = timezone.now()
        wait_for(lambda: worker_seen_after(back_at), timeout=60, what="a tick sent by beat after Redis returned")
        assert all(proc.poll() is None for proc in cluster.workers + cluster.beats)

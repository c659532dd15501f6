"""The Celery app and the one place periodic work is declared."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("brokerlink")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # The product's promise: every connection's state is at most about a minute old.
    # The sweep only claims connections whose next_check_at is due, so an extra or
    # duplicated beat tick costs one cheap query, never a second check.
    "heartbeat-sweep": {
        "task": "connections.tasks.heartbeat_sweep",
        "schedule": float(os.environ.get("HEARTBEAT_INTERVAL_SECONDS", "60")),
        "options": {"expires": 55},
    },
    # Workers prove they are alive for /health/ready/ even on the embedded broker,
    # which cannot broadcast a ping.
    "ops-beat-tick": {
        "task": "ops.tasks.beat_tick",
        "schedule": 15.0,
        "options": {"expires": 14},
    },
}

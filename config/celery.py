"""The Celery app and the one place periodic work is declared."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("brokerlink")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


BEAT_TICK_SECONDS = float(os.environ.get("OPS_BEAT_TICK_SECONDS", "15"))

# The engine's tasks (engine/tasks.py) keep their connections.tasks.* names from before the
# engine had its own app, so messages queued across an upgrade still find them.
app.conf.beat_schedule = {
    # The product's promise: every connection's state is at most about a minute old.
    # The tick counts what is due and sends lanes (sweep tasks every worker process may take,
    # at most ENGINE_SWEEP_LANES in flight); lanes claim only connections whose next_check_at
    # is due, under leases, so an extra or duplicated tick costs a count, never a second check.
    "heartbeat-sweep": {
        "task": "connections.tasks.heartbeat_tick",
        "schedule": float(os.environ.get("HEARTBEAT_INTERVAL_SECONDS", "60")),
        "options": {"expires": 55},
    },
    # Workers prove they are alive for /health/ready/ even on the embedded broker, which
    # cannot broadcast a ping; 15 s keeps a worker's liveness well inside HEALTH_FRESH_SECONDS.
    "ops-beat-tick": {
        "task": "ops.tasks.beat_tick",
        "schedule": BEAT_TICK_SECONDS,
        "options": {"expires": max(1.0, BEAT_TICK_SECONDS - 1)},
    },
    # Checks are counted by the batch write itself (check logs, uptime days); hourly is enough
    # to store the day a connection that is no longer checked left behind.
    "checkresults-rollup": {
        "task": "connections.tasks.checkresults_rollup",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
    # Pruning kept checks, hours and tallies past their retention is bulk deletion: daily is
    # enough to keep each within its retention plus a day, without competing with sweeps all day.
    "checkresults-prune": {
        "task": "connections.tasks.checkresults_prune",
        "schedule": 86400.0,
        "options": {"expires": 3600},
    },
    # Expiry warnings go out two days (or two hours, for daily-expiry grants) before a hard
    # deadline; an hourly look is precise enough for both and costs one indexed query.
    "expiry-warnings": {
        "task": "connections.tasks.expiry_warnings_send",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
    # Alert conditions are measured over 15-minute windows; evaluating every minute raises an
    # alert within about a minute of a threshold crossing, for a handful of aggregate queries.
    "alerts-evaluate": {
        "task": "ops.tasks.alerts_evaluate",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Custom brokers' discovery metadata (RFC 8414 / OIDC) is fetched again and the last good
    # copy stored: a discovery outage at deploy time heals within 5 minutes without a restart,
    # and endpoints that move are picked up. Metadata rarely changes, so 5 minutes is plenty.
    "brokers-discovery-refresh": {
        "task": "brokers.tasks.discovery_refresh",
        "schedule": 300.0,
        "options": {"expires": 290},
    },
    # Webhook retries are scheduled as countdown tasks; this catches the ones whose message was
    # lost (broker restart, killed worker). Retries start at 5 s, so a lost one is at most 30 s late.
    "webhooks-retry-due": {
        "task": "ops.tasks.webhooks_retry_due",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
    # The API audit trail is kept for API_AUDIT_RETENTION_DAYS (90); one daily DELETE.
    "api-audit-prune": {
        "task": "api.tasks.api_audit_prune",
        "schedule": 86400.0,
        "options": {"expires": 3600},
    },
}

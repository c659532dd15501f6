"""Prometheus metrics, computed from the database on each scrape.

Web, worker and beat are separate processes (often on separate machines), so in-process
counters would each see a slice. The database holds the whole truth: a custom collector
reads it per scrape, and every instance behind the load balancer answers the same.

Windowed values (`*_window` gauges and the latency histogram) cover the last
METRICS_WINDOW_SECONDS (an hour by default): they are gauges of recent behaviour, so
use them directly (`histogram_quantile(0.95, brokerlink_check_latency_window_seconds_bucket)`),
not through `rate()`.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger(__name__)

LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000)
# kombu's Redis transport keeps one list per priority step: "celery", "celery\x06\x163", ...
REDIS_PRIORITY_STEPS = (0, 3, 6, 9)


def _window_start():
    return timezone.now() - timedelta(seconds=settings.METRICS_WINDOW_SECONDS)


def collect_connections():
    from connections.models import Connection

    family = GaugeMetricFamily(
        "brokerlink_connections", "Connections by broker and status.", labels=["broker", "status"]
    )
    rows = Connection.objects.order_by().values("broker_slug", "status").annotate(n=Count("id"))
    for row in rows:
        family.add_metric([row["broker_slug"], row["status"]], row["n"])
    yield family


def collect_checks():
    from engine.checkstore import tallies_since

    tallies = tallies_since(_window_start())
    outcomes = GaugeMetricFamily(
        "brokerlink_checks_window",
        "Heartbeat checks in the metrics window by broker and outcome (ok or the error category).",
        labels=["broker", "outcome"],
    )
    for slug, row in tallies.items():
        if row["passed"]:
            outcomes.add_metric([slug, "ok"], row["passed"])
        for outcome, n in row["failures"].items():
            outcomes.add_metric([slug, outcome], n)
    yield outcomes

    latency = HistogramMetricFamily(
        "brokerlink_check_latency_window_seconds",
        "Heartbeat check latency in the metrics window, by broker.",
        labels=["broker"],
    )
    for slug, row in tallies.items():
        histogram = row["latency_all"]
        if not histogram:
            continue
        # Every bound here is a bound of the stored buckets (engine.checkstore.latency_bucket).
        cumulative = [
            (str(b / 1000), sum(n for bound, n in histogram.items() if bound <= b)) for b in LATENCY_BUCKETS_MS
        ]
        cumulative.append(("+Inf", sum(histogram.values())))
        latency.add_metric([slug], cumulative, row["latency_sum_ms"] / 1000)
    yield latency


def collect_events():
    from connections.models import ConnectionEvent

    kinds = {
        ConnectionEvent.Kind.REFRESHED: ("brokerlink_refreshes_window", "success"),
        ConnectionEvent.Kind.REFRESH_FAILED: ("brokerlink_refreshes_window", "failed"),
        ConnectionEvent.Kind.REVOKED: ("brokerlink_revocations_window", "success"),
        ConnectionEvent.Kind.REVOCATION_FAILED: ("brokerlink_revocations_window", "failed"),
    }
    families = {
        "brokerlink_refreshes_window": GaugeMetricFamily(
            "brokerlink_refreshes_window",
            "Token refreshes in the metrics window by outcome.",
            labels=["broker", "outcome"],
        ),
        "brokerlink_revocations_window": GaugeMetricFamily(
            "brokerlink_revocations_window",
            "Token revocations in the metrics window by outcome.",
            labels=["broker", "outcome"],
        ),
    }
    rows = (
        ConnectionEvent.objects.filter(created_at__gte=_window_start(), kind__in=list(kinds))
        .order_by()
        .values("connection__broker_slug", "kind")
        .annotate(n=Count("id"))
    )
    for row in rows:
        name, outcome = kinds[row["kind"]]
        families[name].add_metric([row["connection__broker_slug"], outcome], row["n"])
    yield from families.values()


def collect_engine():
    """Circuit breakers and sweep runs, when the engine's models are installed."""
    try:
        from engine.models import CircuitBreaker, SweepRun
    except ImportError:
        return
    state = GaugeMetricFamily(
        "brokerlink_circuit_state", "1 for each broker's current circuit state.", labels=["broker", "state"]
    )
    for broker, current in CircuitBreaker.objects.values_list("broker_slug", "state"):
        for choice in CircuitBreaker.State.values:
            state.add_metric([broker, choice], 1 if current == choice else 0)
    yield state

    # A tick that sent no lane because every lane was busy is not a finished cycle.
    cycles = SweepRun.objects.filter(finished_at__isnull=False).exclude(lanes=0, due__gt=0)
    last = cycles.order_by("-started_at").first()
    if last is not None:
        yield GaugeMetricFamily(
            "brokerlink_sweep_duration_seconds",
            "Duration of the last finished sweep.",
            value=(last.duration_ms or 0) / 1000,
        )
        yield GaugeMetricFamily(
            "brokerlink_sweep_lag_seconds",
            "How late the most overdue connection was when the last sweep claimed it.",
            value=last.max_lag_seconds,
        )
        yield GaugeMetricFamily(
            "brokerlink_sweep_last_finished_timestamp_seconds",
            "When the last sweep finished (alert when this stops moving).",
            value=last.finished_at.timestamp(),
        )


def queue_depth() -> int:
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        queue = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
        try:
            keys = [queue if step == 0 else f"{queue}\x06\x16{step}" for step in REDIS_PRIORITY_STEPS]
            pipe = client.pipeline()
            for key in keys:
                pipe.llen(key)
            return sum(pipe.execute())
        finally:
            client.close()
    folder = settings.CELERY_EMBEDDED_BROKER_DIR
    return sum(1 for name in os.listdir(folder) if name.endswith(".msg")) if os.path.isdir(folder) else 0


def collect_queue():
    yield GaugeMetricFamily("brokerlink_queue_depth", "Messages waiting in the Celery queue.", value=queue_depth())


def collect_services():
    from ops.health import health_report

    report = health_report()
    family = GaugeMetricFamily(
        "brokerlink_service_up", "1 when a dependency's health check passes.", labels=["service"]
    )
    for name, result in report["services"].items():
        family.add_metric([name], 1 if result["ok"] else 0)
    yield family


SOURCES = [collect_connections, collect_checks, collect_events, collect_engine, collect_queue, collect_services]


class DatabaseCollector:
    """Runs every source; one failing (a missing table, Redis down) costs only its own metrics."""

    def describe(self):
        return []  # no collect() at registration time

    def collect(self):
        errors = GaugeMetricFamily(
            "brokerlink_metrics_source_errors", "1 when a metrics source failed this scrape.", labels=["source"]
        )
        for source in SOURCES:
            name = source.__name__.removeprefix("collect_")
            try:
                families = list(source())
            except Exception:
                logger.warning("ops.metrics.source_failed", extra={"source": name}, exc_info=True)
                errors.add_metric([name], 1)
                continue
            errors.add_metric([name], 0)
            yield from families
        yield errors


def metrics_render() -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST

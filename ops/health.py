"""Health of the services brokerlink depends on, for load balancers and monitors.

Each check is a plain function returning a `CheckResult`; `health_run` runs them each in
its own thread with its own timeout, so one hung dependency (a Redis that accepts the TCP
connection and never answers, a PostgreSQL stuck in recovery) cannot hang the endpoint.

Only the database decides readiness: without it the web cannot serve a page, so the
overall status is `unhealthy` (HTTP 503) and the load balancer takes the instance out.
Redis, the workers and beat being down leave pages working, so those make the overall
status `degraded` (HTTP 200) — taking every web instance out of rotation because Redis
is down would turn a background problem into a full outage. A database that is up but has
no free connection ("busy": ops.busy) is `degraded` too: every instance shares it, so
dropping instances would not help.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""
    latency_ms: int = 0
    critical: bool = False
    data: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _fresh_after():
    return timezone.now() - timedelta(seconds=settings.HEALTH_FRESH_SECONDS)


def _database_busy_result() -> CheckResult:
    # Up but out of connections: not a reason to take this instance out (see ops.busy).
    return CheckResult("database", False, "busy: every connection is in use", data={"state": "busy"})


def check_database() -> CheckResult:
    from ops.busy import database_busy, pool_saturated

    try:
        if pool_saturated(connection):
            return _database_busy_result()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return CheckResult("database", True, "ok", critical=True)
    except Exception as exc:
        if database_busy(exc):
            return _database_busy_result()
        raise
    finally:
        # Checks run in short-lived threads; their connections must not outlive them.
        connection.close()


def check_redis() -> CheckResult:
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS,
        socket_connect_timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    finally:
        client.close()
    return CheckResult("redis", True, "ok")


def check_broker() -> CheckResult:
    """The embedded (filesystem) broker: its folder exists and accepts a new file."""
    folder = settings.CELERY_EMBEDDED_BROKER_DIR
    if not os.path.isdir(folder):
        return CheckResult("broker", False, f"folder {folder} does not exist")
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".health-", delete=True):
        pass
    return CheckResult("broker", True, "ok")


def check_workers() -> CheckResult:
    from ops.models import ServiceHeartbeat

    try:
        names = list(
            ServiceHeartbeat.objects.filter(kind=ServiceHeartbeat.Kind.WORKER, last_seen_at__gte=_fresh_after())
            .exclude(name__startswith="marker:")
            .values_list("name", flat=True)
        )
    finally:
        connection.close()
    if not names:
        return CheckResult("workers", False, f"no worker seen in the last {settings.HEALTH_FRESH_SECONDS}s")
    return CheckResult("workers", True, f"{len(names)} alive", data={"alive": sorted(names)})


def check_beat() -> CheckResult:
    from ops.services import service_heartbeat_latest

    try:
        last = service_heartbeat_latest(kind="beat")
    finally:
        connection.close()
    if last is None:
        return CheckResult("beat", False, "beat has never run")
    age = (timezone.now() - last).total_seconds()
    data = {"last_run_at": last.isoformat(), "age_seconds": round(age, 1)}
    if age >= settings.HEALTH_FRESH_SECONDS:
        return CheckResult("beat", False, f"last run {age:.0f}s ago", data=data)
    return CheckResult("beat", True, "ok", data=data)


def broker_service_name() -> str:
    return "redis" if settings.REDIS_URL else "broker"


def health_services() -> dict:
    """Name → check function, in the order they are reported."""
    return {
        "database": check_database,
        broker_service_name(): check_redis if settings.REDIS_URL else check_broker,
        "workers": check_workers,
        "beat": check_beat,
    }


def _run_one(name: str, func, timeout: float) -> CheckResult:
    box: dict = {}

    def target():
        try:
            box["result"] = func()
        except Exception as exc:  # any failure of a dependency is a failed check, never a 500
            # The exception text names hosts, ports and users: it goes to the log, never to the answer.
            logger.warning("ops.health.check_failed", extra={"service": name, "error": f"{type(exc).__name__}: {exc}"})
            box["result"] = CheckResult(name, False, f"check failed ({type(exc).__name__}); see the logs")

    started = time.monotonic()
    # A daemon thread per check: a hung one is abandoned, never waited for, never blocks a pool.
    thread = threading.Thread(target=target, name=f"health-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    result = box.get("result") or CheckResult(name, False, f"timed out after {timeout:g}s")
    result.name = name
    result.critical = name == "database" and result.data.get("state") != "busy"
    result.latency_ms = int((time.monotonic() - started) * 1000)
    return result


def health_check_services(*, names: list[str] | None = None, timeout: float | None = None) -> list[CheckResult]:
    """Run the named checks (all by default) concurrently, each bounded by `timeout`."""
    services = health_services()
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS if timeout is None else timeout
    selected = [(name, services[name]) for name in (names or list(services))]
    results: list[CheckResult] = [None] * len(selected)  # type: ignore[list-item]

    def run(index, name, func):
        results[index] = _run_one(name, func, timeout)

    # Run the checks side by side, so the endpoint answers within about one timeout.
    runners = [threading.Thread(target=run, args=(i, n, f), daemon=True) for i, (n, f) in enumerate(selected)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout + 1)
    return [r or CheckResult(selected[i][0], False, "timed out") for i, r in enumerate(results)]


def health_overall(results: list[CheckResult]) -> str:
    if any(not r.ok and r.critical for r in results):
        return UNHEALTHY
    if any(not r.ok for r in results):
        return DEGRADED
    return HEALTHY


_cache_lock = threading.Lock()
_cache: dict = {"at": 0.0, "report": None}


def health_status_page() -> tuple[str, list[dict]]:
    """Fresh checks for the staff system-status page (ops/views_system.py): the
    overall word the page shows ("healthy", "degraded", "down") and one row per service."""
    results = health_check_services()
    overall = {"healthy": "healthy", "degraded": "degraded", "unhealthy": "down"}.get(health_overall(results), "down")
    return overall, [{"name": r.name, "ok": r.ok, "detail": r.detail, "latency_ms": r.latency_ms} for r in results]


def health_report(*, force: bool = False) -> dict:
    """The readiness report; reused for HEALTH_CACHE_SECONDS unless `force`.

    The cache is per process and in memory on purpose: it must work while Redis is down,
    and it keeps a load balancer polling every second from hammering PostgreSQL.
    """
    ttl = settings.HEALTH_CACHE_SECONDS
    now = time.monotonic()
    with _cache_lock:
        cached = _cache["report"]
        if not force and cached is not None and now - _cache["at"] < ttl:
            return cached
    results = health_check_services()
    report = {
        "status": health_overall(results),
        "checked_at": timezone.now().isoformat(),
        "services": {r.name: r.as_dict() for r in results},
    }
    with _cache_lock:
        _cache.update(at=time.monotonic(), report=report)
    return report


_service_cache: dict[str, tuple[float, CheckResult]] = {}


def health_service_result(name: str) -> CheckResult:
    """One service's check, reused for HEALTH_CACHE_SECONDS like the readiness report.

    Without it every anonymous request to /health/service/<name>/ cost two threads and a query.
    """
    now = time.monotonic()
    with _cache_lock:
        cached = _service_cache.get(name)
        if cached is not None and now - cached[0] < settings.HEALTH_CACHE_SECONDS:
            return cached[1]
    (result,) = health_check_services(names=[name])
    with _cache_lock:
        _service_cache[name] = (time.monotonic(), result)
    return result


def health_cache_clear() -> None:
    with _cache_lock:
        _cache.update(at=0.0, report=None)
        _service_cache.clear()

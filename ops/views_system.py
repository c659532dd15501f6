"""The staff system status page (`/connections/system/`, the address staff know): ops' health
checks and alerts with the engine's circuits, monitoring and refresh tokens, in one view."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from brokers.models import BrokerApp
from brokers.registry import UnknownBroker, all_profiles, get_profile
from brokers.services import broker_app_rotation_summary
from common.staff import second_factor_redirect, staff_verified
from connections.models import Connection
from connections.state import INACTIVE_STATUSES
from engine.checkstore import tallies_since
from engine.models import CircuitBreaker
from engine.monitoring import monitoring_status
from ops.alerts import alerts_open
from ops.health import health_status_page
from ops.system_badge import system_badge

# What each of ops' health checks is about, in words ("broker" is Celery's message transport,
# not a brokerage: "Broker: OK" read as if every broker answered).
SERVICE_LABELS = {
    "database": "Database",
    "redis": "Redis",
    "broker": "Task queue (Celery's message transport)",
    "workers": "Workers",
    "beat": "Scheduler (Celery beat)",
}


def _services() -> tuple[str, list[dict]]:
    overall, services = health_status_page()
    labelled = []
    for service in services:
        service = dict(service)
        service["label"] = SERVICE_LABELS.get(service.get("name", ""), str(service.get("name", "")).capitalize())
        labelled.append(service)
    return overall, labelled


def _breakers(now) -> list[dict]:
    states = {b.broker_slug: b for b in CircuitBreaker.objects.all()}
    since = now - timedelta(hours=1)
    rates = {
        slug: {"n": row["checks"], "bad": row["checks"] - row["passed"]} for slug, row in tallies_since(since).items()
    }
    rows = []
    for profile in all_profiles():
        breaker = states.get(profile.slug)
        rate = rates.get(profile.slug)
        rows.append(
            {
                "slug": profile.slug,
                "name": profile.name,
                "state": breaker.get_state_display() if breaker else "Closed",
                "state_key": breaker.state if breaker else "closed",
                "error_rate": f"{100 * rate['bad'] / rate['n']:.1f}%" if rate and rate["n"] else "no checks",
                "checks": rate["n"] if rate else 0,
                "last_error": breaker.last_error_message if breaker else "",
            }
        )
    return rows


def _refresh_tokens() -> list[dict]:
    """Per broker app: what was learned about its refresh tokens (brokers.rotation) and how
    many active connections have a refresh out that the broker has not answered."""
    awaiting = dict(
        Connection.objects.exclude(status__in=INACTIVE_STATUSES)
        .filter(refresh_sent_at__isnull=False, broker_app__isnull=False)
        .values_list("broker_app")
        .annotate(n=Count("pk"))
        .values_list("broker_app", "n")
    )
    rows = []
    for app in BrokerApp.objects.all():
        try:
            profile = get_profile(app.broker_slug)
        except UnknownBroker:
            continue
        rows.append(
            {
                "slug": app.broker_slug,
                "name": profile.name,
                "environment": app.get_environment_display(),
                "summary": broker_app_rotation_summary(app, profile),
                "awaiting": awaiting.get(app.pk, 0),
            }
        )
    return rows


@login_required
@require_GET
def system_status(request):
    if not staff_verified(request):
        redirect_to = second_factor_redirect(request)
        if redirect_to is None:
            raise PermissionDenied
        return redirect_to
    now = timezone.now()
    overall, services = _services()
    monitoring = monitoring_status(now=now)
    breakers = _breakers(now)
    alerts = list(alerts_open())
    badge = system_badge(services=overall, alerts=alerts, breakers=breakers, monitoring=monitoring)
    context = {
        "overall": badge.key,
        "badge": badge,
        "services": services,
        "alerts": alerts,
        "breakers": breakers,
        "refresh_tokens": _refresh_tokens(),
        "monitoring": monitoring,
        "checked_at": now,
    }
    return render(request, "ops/system_status.html", context)

"""The staff system status page (`/connections/system/`, the address staff know): ops' health
checks and alerts with the engine's circuits, monitoring and refresh tokens, in one view."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from common.staff import second_factor_redirect, staff_verified
from engine.monitoring import monitoring_status
from ops.alerts import alerts_open
from ops.health import health_status_page
from ops.selectors import breaker_rows, refresh_token_rows
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
    breakers = breaker_rows(now)
    alerts = list(alerts_open())
    badge = system_badge(services=overall, alerts=alerts, breakers=breakers, monitoring=monitoring)
    context = {
        "overall": badge.key,
        "badge": badge,
        "services": services,
        "alerts": alerts,
        "breakers": breakers,
        "refresh_tokens": refresh_token_rows(),
        "monitoring": monitoring,
        "checked_at": now,
    }
    return render(request, "ops/system_status.html", context)

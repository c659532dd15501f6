from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from ops import health, metrics
from ops.access import bearer_matches, is_staff


def may_see_details(request) -> bool:
    """Service details (worker host names, latencies, failure causes) are for operators only."""
    return bearer_matches(request, settings.HEALTH_CHECK_TOKEN) or is_staff(request)


def _report_response(report: dict, *, details: bool = True) -> JsonResponse:
    status = 503 if report["status"] == health.UNHEALTHY else 200
    if not details:
        report = {"status": report["status"]}
    return JsonResponse(report, status=status)


@never_cache
@require_GET
def health_live(request):
    """Liveness: the process answers. No dependency is consulted."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def health_ready(request):
    """Readiness: 503 only when the web cannot serve (database down); degraded is 200.

    Anonymous callers (load balancers) get the status; details need the token or a staff session.
    """
    return _report_response(health.health_report(), details=may_see_details(request))


@never_cache
@require_GET
def health_service(request, name: str):
    if name not in health.health_services():
        raise Http404(f"unknown service {name!r}")
    result = health.health_service_result(name)
    body = result.as_dict() if may_see_details(request) else {"name": result.name, "ok": result.ok}
    return JsonResponse(body, status=200 if result.ok else 503)


@never_cache
@csrf_exempt
@require_POST
def health_check_now(request):
    """Run every check now, bypassing the cached report. Staff session (with CSRF) or bearer token."""
    if not bearer_matches(request, settings.HEALTH_CHECK_TOKEN):
        if not is_staff(request):
            return JsonResponse({"error": "staff session or bearer token required"}, status=403)
        # The token path needs no CSRF token; a browser session still does.
        rejected = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
        if rejected is not None:
            return rejected
    return _report_response(health.health_report(force=True))


@never_cache
@require_GET
def metrics_view(request):
    """Prometheus text format. 403 without a staff session or `Bearer METRICS_TOKEN`."""
    if not (bearer_matches(request, settings.METRICS_TOKEN) or is_staff(request)):
        return HttpResponse("metrics require a staff session or bearer token\n", status=403, content_type="text/plain")
    body, content_type = metrics.metrics_render()
    return HttpResponse(body, content_type=content_type)


@require_POST
def alert_acknowledge_view(request, alert_id: int):
    """Acknowledge an alert from the system status page (staff, CSRF-protected form)."""
    from django.contrib import messages
    from django.shortcuts import redirect
    from django.utils.http import url_has_allowed_host_and_scheme

    from ops.selectors import alert_get
    from ops.services import alert_acknowledge

    if not is_staff(request):
        return HttpResponse("staff only\n", status=403, content_type="text/plain")
    alert = alert_get(alert_id)
    if alert is None:
        raise Http404("No Alert matches the given query.")
    if alert_acknowledge(alert, user=request.user):
        messages.success(request, f"Acknowledged: {alert.message}")
    nxt = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(nxt)
    return redirect("ops:system_status")

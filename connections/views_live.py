"""Live parts of the connection pages: the event stream, the fragments it makes pages
re-fetch, Check now, and the staff system status page."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from common.threadlanes import page_threads
from connections import fragments, hub, live, presenters
from connections.models import Connection, ConnectionStatus
from connections.selectors import connection_get_for_user

logger = logging.getLogger(__name__)


def _monitoring_active() -> bool:
    return presenters.monitoring_status().active


def _sessions_alive(keys: list[str]) -> set[str]:
    """The session keys among `keys` that are still signed in (Django's session store)."""
    from importlib import import_module

    store = import_module(settings.SESSION_ENGINE).SessionStore
    return {key for key in keys if store(session_key=key).get("_auth_user_id")}


# Open streams hear when monitoring stops or starts again (the summary strip's banner), and
# a dashboard's stream sends the changed cards themselves.
live.monitoring_probe = _monitoring_active
live.card_render = fragments.cards_for_stream
live.card_finish = fragments.card_finish
live.summary_render = fragments.summary_for_stream
live.sessions_alive = _sessions_alive


def _fragment(request, template: str, context: dict, *, final: bool) -> HttpResponse:
    response = render(request, template, context)
    if final:
        # 286: htmx stops polling this element; a disconnected connection never changes again.
        response.status_code = HttpResponseStopPolling.status_code
    return response


@page_threads
@login_required
@require_GET
def card(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    if not request.htmx:
        return redirect("connections:detail", connection_id=connection.pk)
    if connection.status != ConnectionStatus.DISCONNECTED:
        # The live re-fetch: the cached card unless what it shows changed.
        return HttpResponse(fragments.cards_html(request, [connection])[1][0])
    view = presenters.card_for(connection)
    return _fragment(request, "connections/partials/_card.html", {"card": view}, final=view.is_final)


@page_threads
@login_required
@require_GET
def panel(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    if not request.htmx:
        return redirect("connections:detail", connection_id=connection.pk)
    detail = presenters.detail_for(connection)
    return _fragment(request, "connections/partials/_panel.html", {"detail": detail}, final=detail.card.is_final)


@page_threads
@login_required
@require_GET
def summary(request):
    if not request.htmx:
        return redirect("connections:dashboard")
    summary = presenters.summary_for_user(user=request.user, show=request.GET.get("show", ""))
    context = {"summary": summary, "monitoring": presenters.monitoring_status()}
    return render(request, "connections/partials/_summary_strip.html", context)


@login_required
@require_POST
def check_now(request, connection_id):
    """Check one connection now; the status passes through "checking" (which open pages see
    live) and the answer is the card (or detail panel) with the result."""
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    try:
        from connections.engine.check import CheckBusy, connection_check_now
    except ImportError:  # engine not installed in this build
        CheckBusy, connection_check_now = None, None
    notice = ""
    if connection_check_now is None:
        notice = "Checks are not available right now."
    elif not check_now_allowed(connection):
        notice = "Checked moments ago: try again in a few seconds."
    else:
        try:
            connection_check_now(connection, actor=request.user)
        except CheckBusy:
            notice = "This connection is being checked right now; the result will appear shortly."
        except ValueError:
            notice = "This connection is not checked until it is reconnected."
    connection.refresh_from_db()
    if notice:
        messages.info(request, notice)
    else:
        state = presenters.card_for(connection).state
        if state.key in ("connected", "slow"):
            messages.success(request, "Check passed." if state.key == "connected" else "Check passed, slowly.")
        else:
            messages.warning(request, f"Check finished: {state.label}.")
    logger.info("connections.check_now.done", extra={"connection_id": str(connection.pk), "status": connection.status})
    if not request.htmx:
        return redirect("connections:detail", connection_id=connection.pk)
    if (request.htmx.target or "").startswith("panel-"):
        detail = presenters.detail_for(connection)
        context = {"detail": detail, "oob_messages": True}
        return _fragment(request, "connections/partials/_panel.html", context, final=detail.card.is_final)
    view = presenters.card_for(connection)
    context = {"card": view, "oob_messages": True}
    return _fragment(request, "connections/partials/_card.html", context, final=view.is_final)


def check_now_allowed(connection) -> bool:
    """One "Check now" per connection per cooldown: each press is a call on the app's shared
    broker quota. Atomic (cache.add); with Redis down the cache's in-process fallback keeps
    the cooldown per process, and the check's lease still keeps presses from overlapping."""
    from django.core.cache import cache

    cooldown = int(getattr(settings, "CHECK_NOW_COOLDOWN_SECONDS", 10))
    return cooldown <= 0 or cache.add(f"check-now-cooldown:{connection.pk}", 1, timeout=cooldown)


# --- the stream -----------------------------------------------------------------------


class EventStreamResponse(StreamingHttpResponse):
    """Server-sent events; `on_close` runs when Django closes the response (always, even
    when the client left before the first byte and the generator never started)."""

    def __init__(self, generator, *, on_close=None):
        super().__init__(generator, content_type="text/event-stream")
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
        self._on_close = on_close

    def close(self):
        super().close()
        if self._on_close is not None:
            self._on_close()


def _stream_authorise(request, connection_id=None):
    """(user id, the page's CSRF token, None) or (None, None, response): sign-in and
    ownership, read in the request's thread, whose database connection is closed before the
    stream starts waiting. The token goes into the cards the stream sends (their forms)."""
    try:
        user = request.user
        if not user.is_authenticated:
            return None, None, _signed_out_stream()
        if connection_id is not None and not Connection.objects.filter(pk=connection_id, user=user).exists():
            return None, None, HttpResponse("No such connection.", status=404, content_type="text/plain")
        return user.pk, get_token(request), None
    finally:
        # Without this the request's connection stays open (and out of the pool) for the
        # whole life of the stream: that is what used to exhaust PostgreSQL.
        live.db_release()


async def _open(request, connection_id=None):
    try:
        live.process_admit()  # the per-process cap, before any database work
        user_id, csrf_token, refused = await sync_to_async(_stream_authorise)(request, connection_id)
        if refused is not None:
            return refused
        subscriber = await live.stream_open(user_id, connection_id, session_key=request.session.session_key or "")
    except live.TooManyStreams as exc:
        logger.info("connections.stream.refused", extra={"status": exc.status})
        response = HttpResponse(str(exc), status=exc.status, content_type="text/plain")
        response["Retry-After"] = "30"
        return response
    loop = asyncio.get_running_loop()
    return EventStreamResponse(
        live.connection_stream(
            user_id,
            connection_id=connection_id,
            subscriber=subscriber,
            csrf_token=csrf_token,
            show=request.GET.get("show", "")[:40],
        ),
        on_close=lambda: live.stream_close_threadsafe(subscriber, loop),
    )


def _signed_out_stream() -> StreamingHttpResponse:
    """The session ended: one `signed-out` event (the page shows "You were signed out"), and a
    long `retry:` so the browser does not keep knocking; the page closes the stream itself."""

    async def events():
        yield "retry: 3600000\n\n"
        yield live.sse("signed-out", "signed-out")

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


async def stream(request):
    """Server-sent events for the signed-in user's connections (an async view: run under ASGI)."""
    return await _open(request)


async def connection_stream(request, connection_id):
    """The same stream, for the events of one connection (another user's: 404)."""
    return await _open(request, connection_id)


# --- system status --------------------------------------------------------------------


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
    # Answered by ops (its health checks) through the hub; "unknown" without it.
    overall, services = hub.ask("services_health", default=("unknown", []))
    labelled = []
    for service in services:
        service = dict(service)
        service["label"] = SERVICE_LABELS.get(service.get("name", ""), str(service.get("name", "")).capitalize())
        labelled.append(service)
    return overall, labelled


def _breakers(now) -> list[dict]:
    from datetime import timedelta

    from brokers.registry import all_profiles
    from connections.engine.checkstore import tallies_since

    try:
        from connections.engine.models import CircuitBreaker
    except ImportError:
        CircuitBreaker = None
    states = {b.broker_slug: b for b in CircuitBreaker.objects.all()} if CircuitBreaker else {}
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
    from django.db.models import Count

    from brokers.models import BrokerApp
    from brokers.registry import UnknownBroker, get_profile
    from brokers.services import broker_app_rotation_summary
    from connections.state import INACTIVE_STATUSES

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
    from common.staff import second_factor_redirect, staff_verified

    if not staff_verified(request):
        redirect_to = second_factor_redirect(request)
        if redirect_to is None:
            raise PermissionDenied
        return redirect_to
    now = timezone.now()
    overall, services = _services()
    monitoring = presenters.monitoring_status(now=now)
    breakers = _breakers(now)
    # Answered by ops (its open alerts) through the hub; none without it.
    alerts = hub.ask("open_alerts", default=[])
    badge = presenters.system_badge(services=overall, alerts=alerts, breakers=breakers, monitoring=monitoring)
    context = {
        "overall": badge.key,
        "badge": badge,
        "services": services,
        "breakers": breakers,
        "refresh_tokens": _refresh_tokens(),
        "monitoring": monitoring,
        "checked_at": now,
    }
    return render(request, "connections/system_status.html", context)

"""Live parts of the connection pages: the event stream, the fragments it makes pages
re-fetch, and Check now. (The staff system status page is ops': ops/views_system.py.)"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from common.threadlanes import page_threads
from connections.models import ConnectionStatus
from engine.monitoring import monitoring_status
from engine.services import CheckBusy, CheckTooSoon, connection_check_now
from pages import fragments, live, live_reads, live_stream
from pages.presenters.cards import card_for
from pages.presenters.dashboard import summary_for_user
from pages.presenters.detail import detail_for
from pages.selectors import connection_exists_for_user, connection_get_for_user

logger = logging.getLogger(__name__)


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
    view = card_for(connection)
    return _fragment(request, "pages/partials/_card.html", {"card": view}, final=view.is_final)


@page_threads
@login_required
@require_GET
def panel(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    if not request.htmx:
        return redirect("connections:detail", connection_id=connection.pk)
    detail = detail_for(connection)
    return _fragment(request, "pages/partials/_panel.html", {"detail": detail}, final=detail.card.is_final)


@page_threads
@login_required
@require_GET
def summary(request):
    if not request.htmx:
        return redirect("connections:dashboard")
    summary = summary_for_user(user=request.user, show=request.GET.get("show", ""))
    context = {"summary": summary, "monitoring": monitoring_status()}
    return render(request, "pages/partials/_summary_strip.html", context)


@login_required
@require_POST
def check_now(request, connection_id):
    """Check one connection now; the status passes through "checking" (which open pages see
    live) and the answer is the card (or detail panel) with the result."""
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    notice = ""
    try:
        connection_check_now(connection, actor=request.user, cooldown=True)
    except CheckTooSoon:
        notice = "Checked moments ago: try again in a few seconds."
    except CheckBusy:
        notice = "This connection is being checked right now; the result will appear shortly."
    except ValueError:
        notice = "This connection is not checked until it is reconnected."
    connection.refresh_from_db()
    if notice:
        messages.info(request, notice)
    else:
        state = card_for(connection).state
        if state.key in ("connected", "slow"):
            messages.success(request, "Check passed." if state.key == "connected" else "Check passed, slowly.")
        else:
            messages.warning(request, f"Check finished: {state.label}.")
    logger.info("connections.check_now.done", extra={"connection_id": str(connection.pk), "status": connection.status})
    if not request.htmx:
        return redirect("connections:detail", connection_id=connection.pk)
    if (request.htmx.target or "").startswith("panel-"):
        detail = detail_for(connection)
        context = {"detail": detail, "oob_messages": True}
        return _fragment(request, "pages/partials/_panel.html", context, final=detail.card.is_final)
    view = card_for(connection)
    context = {"card": view, "oob_messages": True}
    return _fragment(request, "pages/partials/_card.html", context, final=view.is_final)


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
        if connection_id is not None and not connection_exists_for_user(user=user, connection_id=connection_id):
            return None, None, HttpResponse("No such connection.", status=404, content_type="text/plain")
        return user.pk, get_token(request), None
    finally:
        # Without this the request's connection stays open (and out of the pool) for the
        # whole life of the stream: that is what used to exhaust PostgreSQL.
        live_reads.db_release()


async def _open(request, connection_id=None):
    try:
        live.process_admit()  # the per-process cap, before any database work
        user_id, csrf_token, refused = await sync_to_async(_stream_authorise)(request, connection_id)
        if refused is not None:
            return refused
        subscriber = await live.stream_open(
            user_id,
            connection_id,
            session_key=request.session.session_key or "",
            seen=live.seen_parse(request.GET.get("seen", "")),
            stale={"0": False, "1": True}.get(request.GET.get("stale", "")),
        )
    except live.TooManyStreams as exc:
        logger.info("connections.stream.refused", extra={"status": exc.status})
        response = HttpResponse(str(exc), status=exc.status, content_type="text/plain")
        response["Retry-After"] = "30"
        return response
    loop = asyncio.get_running_loop()
    return EventStreamResponse(
        live_stream.connection_stream(
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
        yield live_stream.sse("signed-out", "signed-out")

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


async def stream(request):
    """Server-sent events for the signed-in user's connections (an async view: run under ASGI)."""
    return await _open(request)


async def connection_stream(request, connection_id):
    """The same stream, for the events of one connection (another user's: 404)."""
    return await _open(request, connection_id)

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from brokers.registry import UnknownBroker
from common.threadlanes import page_threads
from connections import broker_client
from connections.models import ConnectionStatus
from connections.oauth_flow import PURPOSE_CONNECT, PURPOSE_RECONNECT, FlowError, flow_handoff, flow_take, issuer_check
from connections.services.connect import connect_authorize_url, connection_authorize_complete
from connections.services.disconnect import connection_disconnect, connection_revoke_retry
from connections.services.edits import connection_archive, connection_remove, connection_rename
from connections.services.failures import FAILURES, ConnectFailed
from pages.fragments import dashboard_cards
from pages.presenters.cards import card_for, cards_for_disconnected
from pages.presenters.detail import detail_for
from pages.selectors import (
    connection_get_for_user,
    connection_list_disconnected_for_user,
    connection_lists_for_dashboard,
)

logger = logging.getLogger(__name__)


@page_threads
@login_required
def dashboard(request):
    # ?show=<group>: the summary tiles filter the list.
    # Disconnected cards stay in view (to archive, remove or connect again) until archived.
    shown, put_away, archived_count = connection_lists_for_dashboard(user=request.user)
    dashboard, cards_html = dashboard_cards(request, show=request.GET.get("show", ""), connections=shown)
    context = {
        "dashboard": dashboard,
        "cards_html": cards_html,
        "disconnected": cards_for_disconnected(
            put_away, now=dashboard.now, last_sweep=dashboard.monitoring.last_run_at
        ),
        "archived_count": archived_count,
    }
    return render(request, "pages/dashboard.html", context)


@page_threads
@login_required
@require_GET
def archived(request):
    put_away = connection_list_disconnected_for_user(user=request.user).filter(archived_at__isnull=False)
    cards = cards_for_disconnected(list(put_away), now=timezone.now())
    return render(request, "pages/archived.html", {"cards": cards})


def _failure(request, code: str, *, slug: str = "", detail: str = "", connection_id: str = ""):
    failure = FAILURES[code]
    # No flash message: the page's own heading says it (a message repeated the title above it).
    logger.info("connections.connect.failed", extra={"broker": slug, "failure": code})
    context = {"failure": failure, "code": code, "detail": detail, "slug": slug, "connection_id": connection_id}
    return render(request, "pages/connect_error.html", context, status=failure.http_status)


def _sandbox_off(slug: str) -> bool:
    """The pretend broker is not offered when SANDBOX_ENABLED is off (production's default)."""
    from brokers.registry import SANDBOX_SLUG

    return slug == SANDBOX_SLUG and not settings.SANDBOX_ENABLED


def _start(request, *, slug: str, purpose: str, connection_id: str = "", environment: str | None = None):
    try:
        url = connect_authorize_url(
            request, slug=slug, purpose=purpose, connection_id=connection_id, environment=environment
        )
    except ConnectFailed as exc:
        return _failure(request, exc.code, slug=slug)
    return redirect(url)


@login_required
@require_POST
def connect_start(request, slug: str):
    return _start(request, slug=slug, purpose=PURPOSE_CONNECT)


@require_GET
@sensitive_variables()
def callback(request, slug: str):
    """The broker sends the browser back here. A flow another app started (a partner's connect
    session) is finished by that app's hand-off; every other flow needs its signed-in user."""
    params = request.GET
    flow = None
    handoff = flow_handoff(request, params.get("state", ""))
    if handoff is None and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        if _sandbox_off(slug):
            raise FlowError("not_configured")
        flow = flow_take(request, slug=slug, state=params.get("state", ""))
        try:
            profile = broker_client.profile_for(slug, flow.environment)
        except UnknownBroker:
            raise FlowError("not_configured") from None
        issuer_check(profile, params.get("iss"))
        if params.get("error"):
            raise FlowError("access_denied" if params["error"] == "access_denied" else "authorization_error")
        if not params.get("code"):
            raise FlowError("code_missing")
        if handoff is not None:
            return handoff.complete(request, flow=flow, code=params["code"])
        outcome = connection_authorize_complete(user=request.user, flow=flow, code=params["code"])
    except (FlowError, ConnectFailed) as exc:
        detail = getattr(exc, "detail", "")
        if handoff is not None:
            logger.info("connections.connect.failed", extra={"broker": slug, "failure": exc.code})
            return handoff.failed(request, flow=flow, code=exc.code, detail=detail)
        connection_id = flow.connection_id if flow and flow.purpose == PURPOSE_RECONNECT else ""
        return _failure(request, exc.code, slug=slug, detail=detail, connection_id=connection_id)
    messages.success(request, outcome.message)
    return redirect("connections:detail", connection_id=outcome.connection.pk)


@page_threads
@login_required
@require_GET
def connection_detail(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    return render(request, "pages/detail.html", {"connection": connection, "detail": detail_for(connection)})


@login_required
@require_POST
def reconnect(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    if connection.status == ConnectionStatus.DISCONNECTED:
        # After a disconnect only a full new authorization brings the account back.
        return _start(request, slug=connection.broker_slug, purpose=PURPOSE_CONNECT, environment=connection.environment)
    return _start(
        request,
        slug=connection.broker_slug,
        purpose=PURPOSE_RECONNECT,
        connection_id=str(connection.pk),
        environment=connection.environment,
    )


@login_required
@require_http_methods(["GET", "POST"])
def disconnect(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    if request.method == "GET":
        template = "pages/partials/_disconnect_dialog.html" if request.htmx else "pages/disconnect.html"
        context = {"connection": connection, "card_name": card_for(connection).name, **_revocation_preview(connection)}
        return render(request, template, context)
    outcome = connection_disconnect(connection, request.user)
    (messages.success if outcome.revoked else messages.warning)(request, outcome.message)
    return redirect("connections:detail", connection_id=connection.pk)


def _revocation_preview(connection) -> dict:
    try:
        profile = broker_client.profile_for(connection.broker_slug, connection.environment)
    except UnknownBroker:
        return {"broker_name": connection.broker_slug, "can_revoke": False, "manual_revoke_url": ""}
    return {
        "broker_name": profile.name,
        "can_revoke": profile.can_revoke_single_user,
        "revocation_scope": profile.revocation_scope,
        "manual_revoke_url": profile.manual_revoke_url,
    }


@login_required
@require_POST
def revoke_retry(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    outcome = connection_revoke_retry(connection, request.user)
    (messages.success if outcome.revoked else messages.warning)(request, outcome.message)
    return redirect("connections:detail", connection_id=connection.pk)


@login_required
@require_POST
def rename(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    connection_rename(connection, request.POST.get("nickname", ""))
    messages.success(request, f"Saved: this account is now called “{card_for(connection).name}”.")
    return redirect("connections:detail", connection_id=connection.pk)


@login_required
@require_POST
def archive(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    if connection_archive(connection):
        messages.success(request, f"Archived {card_for(connection).title}.")
    else:
        messages.error(request, "Only a disconnected connection can be archived.")
    return redirect("connections:dashboard")


@login_required
@require_POST
def remove(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    title = card_for(connection).title
    if connection_remove(connection):
        messages.success(request, f"Removed {title} and its history.")
        return redirect("connections:dashboard")
    messages.error(request, "Disconnect the connection before removing it.")
    return redirect("connections:detail", connection_id=connection.pk)

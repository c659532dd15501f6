from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.threadlanes import page_threads
from connections.oauth_flow import PURPOSE_CONNECT
from connections.services.callback import connection_callback_finish
from connections.services.connect import connect_authorize_url, connection_reconnect_url
from connections.services.disconnect import (
    connection_disconnect,
    connection_revocation_preview,
    connection_revoke_retry,
)
from connections.services.edits import connection_archive, connection_remove, connection_rename
from connections.services.failures import FAILURES, ConnectFailed
from pages.fragments import dashboard_cards
from pages.presenters.cards import card_for, cards_for_disconnected
from pages.presenters.detail import detail_for
from pages.selectors import (
    connection_get_for_user,
    connection_list_archived_for_user,
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
    put_away = connection_list_archived_for_user(user=request.user)
    cards = cards_for_disconnected(list(put_away), now=timezone.now())
    return render(request, "pages/archived.html", {"cards": cards})


def _failure(request, code: str, *, slug: str = "", detail: str = "", connection_id: str = ""):
    failure = FAILURES[code]
    # No flash message: the page's own heading says it (a message repeated the title above it).
    logger.info("connections.connect.failed", extra={"broker": slug, "failure": code})
    context = {"failure": failure, "code": code, "detail": detail, "slug": slug, "connection_id": connection_id}
    return render(request, "pages/connect_error.html", context, status=failure.http_status)


def _start(request, *, slug: str, purpose: str):
    try:
        url = connect_authorize_url(request, slug=slug, purpose=purpose)
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
    result = connection_callback_finish(request, slug=slug, params=request.GET)
    if result.sign_in:
        return redirect_to_login(request.get_full_path())
    if result.response is not None:
        return result.response
    if result.failure:
        return _failure(request, result.failure, slug=slug, detail=result.detail, connection_id=result.connection_id)
    messages.success(request, result.outcome.message)
    return redirect("connections:detail", connection_id=result.outcome.connection.pk)


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
    try:
        url = connection_reconnect_url(request, connection)
    except ConnectFailed as exc:
        return _failure(request, exc.code, slug=connection.broker_slug)
    return redirect(url)


@login_required
@require_http_methods(["GET", "POST"])
def disconnect(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    if request.method == "GET":
        template = "pages/partials/_disconnect_dialog.html" if request.htmx else "pages/disconnect.html"
        context = {
            "connection": connection,
            "card_name": card_for(connection).name,
            **connection_revocation_preview(connection),
        }
        return render(request, template, context)
    outcome = connection_disconnect(connection, request.user)
    (messages.success if outcome.revoked else messages.warning)(request, outcome.message)
    return redirect("connections:detail", connection_id=connection.pk)


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

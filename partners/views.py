"""The hosted connect pages an app's end user sees: no brokerlink account, no JavaScript needed.

    GET  /connect/s/<token>/     the link from the API: spends it, binds this browser, redirects to /connect/
    GET  /connect/               which app asks, for whom, and the brokers to pick (or the one to reconnect)
    POST /connect/start/<slug>/  off to the broker (the same OAuth flow as everyone's, handed back here)
    GET  /connect/app/<id>.css   the app's colour (a stylesheet: the CSP allows no inline style)

The broker's callback stays connections' URL; ConnectSessionHandoff finishes those flows.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from csp.decorators import csp_update
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from brokers.registry import UnknownBroker, get_profile
from connections.oauth_flow import PURPOSE_CONNECT, PURPOSE_RECONNECT
from connections.services.connect import connect_authorize_url, connection_authorize_complete
from connections.services.failures import FAILURES, ConnectFailed
from partners.models import ConnectSession, PartnerApp
from partners.selectors import partner_app_brand_colour
from partners.services import (
    PROBLEMS,
    SessionProblem,
    connect_session_complete,
    connect_session_fail,
    connect_session_for_browser,
    connect_session_held,
    connect_session_open,
    offered_brokers,
    return_redirect_url,
)

logger = logging.getLogger(__name__)


def _with_logo(response: HttpResponse, app: PartnerApp | None) -> HttpResponse:
    """Let the page show the app's logo: its https origin joins img-src for this response only."""
    if app is None or not app.logo_url:
        return response
    parts = urlsplit(app.logo_url)
    if parts.scheme != "https" or not parts.netloc:
        return response
    return csp_update({"img-src": ["'self'", f"https://{parts.netloc}"]})(lambda request: response)(None)


def _broker_name(slug: str) -> str:
    try:
        return get_profile(slug).name
    except UnknownBroker:
        return slug


def _render(request, template: str, context: dict, *, status: int = 200, app: PartnerApp | None = None):
    response = render(request, template, {"app": app, **context}, status=status)
    response["Cache-Control"] = "no-store"
    return _with_logo(response, app)


def _problem(request, code: str, *, session: ConnectSession | None = None):
    title, explanation = PROBLEMS[code]
    status = 404 if code in ("unknown", "no_session") else 410
    context = {"code": code, "title": title, "explanation": explanation, "session": session}
    return _render(request, "partners/problem.html", context, status=status, app=session.app if session else None)


@never_cache
@require_GET
def open_link(request, token: str):
    try:
        session = connect_session_open(token, browser=request.session)
    except SessionProblem as problem:
        return _problem(request, problem.code)
    # A new session key for the session that now holds a connect session (no fixation).
    request.session.cycle_key()
    logger.info("partners.connect_session.bound", extra={"session_id": str(session.pk)})
    return redirect("partners:connect")


@never_cache
@require_GET
def connect(request):
    try:
        session = connect_session_for_browser(request.session)
    except SessionProblem as problem:
        return _problem(request, problem.code)
    context = {
        "session": session,
        "end_user": session.end_user,
        "entries": offered_brokers(session),
        "reconnect": session.connection,
    }
    return _render(request, "partners/connect.html", context, app=session.app)


@require_POST
def start(request, slug: str):
    try:
        session = connect_session_for_browser(request.session)
    except SessionProblem as problem:
        return _problem(request, problem.code)
    if slug not in {e.slug for e in offered_brokers(session)}:
        raise Http404("This connect session does not offer that broker.")
    try:
        url = connect_authorize_url(
            request,
            slug=slug,
            purpose=PURPOSE_RECONNECT if session.is_reconnect else PURPOSE_CONNECT,
            connection_id=str(session.connection_id or ""),
            environment=session.environment or None,
            handoff=ConnectSessionHandoff.name,
            handoff_ref=str(session.pk),
        )
    except ConnectFailed as exc:
        return ConnectSessionHandoff().failed(request, flow=None, code=exc.code, session=session, slug=slug)
    return redirect(url)


@require_GET
def app_style(request, app_id):
    colour = partner_app_brand_colour(app_id)
    css = f".partner-accent {{ border-top: 6px solid {colour}; }}\n" if colour else ""
    response = HttpResponse(css, content_type="text/css; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    return response


class ConnectSessionHandoff:
    """Finishes the OAuth flows connect sessions start (registered with connections.oauth_flow)."""

    name = "partners"

    def owns_browser(self, request) -> bool:
        return connect_session_held(request.session)

    def complete(self, request, *, flow, code: str):
        try:
            session = connect_session_for_browser(request.session)
        except SessionProblem as problem:
            return _problem(request, problem.code)
        if str(session.pk) != flow.handoff_ref:
            # A flow of another session of this browser (an older tab): not this one's to finish.
            return _problem(request, "no_session")
        outcome = connection_authorize_complete(end_user=session.end_user, flow=flow, code=code)
        connection = outcome.connection
        connect_session_complete(session, connection, browser=request.session)
        if session.return_url:
            return redirect(
                return_redirect_url(
                    session,
                    connection_id=str(connection.pk),
                    end_user_id=session.end_user.external_id,
                    status="connected",
                )
            )
        context = {
            "session": session,
            "connection": connection,
            "broker_name": _broker_name(connection.broker_slug),
            "reconnected": session.is_reconnect,
        }
        return _render(request, "partners/finished.html", context, app=session.app)

    def failed(self, request, *, flow, code: str, detail: str = "", session=None, slug: str = ""):
        if session is None:
            try:
                session = connect_session_for_browser(request.session)
            except SessionProblem as problem:
                return _problem(request, problem.code)
        if flow is not None and flow.handoff_ref and str(session.pk) != flow.handoff_ref:
            return _problem(request, "no_session")
        connect_session_fail(session, code)
        failure = FAILURES[code]
        context = {
            "failure": failure,
            "code": code,
            "detail": detail,
            "slug": slug or (flow.slug if flow else ""),
            "session": session,
            "back_url": return_redirect_url(session, error=code, end_user_id=session.end_user.external_id)
            if session.return_url
            else "",
        }
        return _render(request, "partners/connect_error.html", context, status=failure.http_status, app=session.app)

"""Connection cards, presented and rendered through their template each time they are served:
the dashboard, a card's live re-fetch and the cards a dashboard's stream sends.

Until issue 27 the rendered HTML was cached and rewritten on the way out (each browser's
CSRF token, and the clock words "40 s ago" recomputed by regular expressions). Rendering every
time costs about the same for the dashboard and the pushed cards (docs/benchmarks.md, "Card
cache"), so the plain way stays: nothing to keep in step with the template, no stale card.
"""

from __future__ import annotations

from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils import timezone

from connections.models import Connection, ConnectionStatus
from engine.monitoring import monitoring_last_run, monitoring_status
from pages.presenters.cards import (
    ConnectionView,
    ProfileCache,
    card_for,
    present_connection,
    recent_checks_attach,
)
from pages.presenters.dashboard import Dashboard, summary_for, summary_for_user
from pages.selectors import connection_list_for_user

CARD_TEMPLATE = "pages/partials/_card.html"


def _views(connections: list[Connection], *, now, last_sweep) -> list[ConnectionView]:
    """What each card shows, with the recent checks behind its uptime bar (one query for all)."""
    recent_checks_attach(connections)
    profiles = ProfileCache()
    return [
        present_connection(c, checks=c.recent_checks, now=now, profiles=profiles, last_sweep=last_sweep)
        for c in connections
    ]


def card_render(view: ConnectionView, *, csrf_token: str) -> str:
    """One card's HTML, its forms carrying this browser's CSRF token."""
    return render_to_string(CARD_TEMPLATE, {"card": view, "csrf_token": csrf_token})


def cards_html(request, connections: list[Connection], *, now=None, last_sweep=None) -> tuple[list, list[str]]:
    """(views, html of each card) for these connections."""
    views = _views(connections, now=now or timezone.now(), last_sweep=last_sweep)
    token = get_token(request)
    return views, [card_render(view, csrf_token=token) for view in views]


def cards_for_stream(user_id, connection_ids) -> dict:
    """{connection id: card view, or "" for a card that left the dashboard (archived or
    removed)} of this user's connections, for the live stream: read once per process for all
    the user's open pages; each page's stream renders them with its token (`card_finish`)."""
    now = timezone.now()
    rows = list(
        Connection.objects.filter(user_id=user_id, pk__in=list(connection_ids)).select_related(
            "broker_app", "engine_state"
        )
    )
    live = [c for c in rows if c.status != ConnectionStatus.DISCONNECTED]
    out: dict = {str(pk): "" for pk in connection_ids}
    for connection, view in zip(live, _views(live, now=now, last_sweep=monitoring_last_run()), strict=True):
        out[str(connection.pk)] = view
    for c in rows:
        if c.status == ConnectionStatus.DISCONNECTED and c.archived_at is None:
            # As the card view answers it: the final card with its revocation result.
            out[str(c.pk)] = card_for(c, now=now)
    return out


def card_finish(view: ConnectionView, *, token: str, now=None) -> str:
    """A card from `cards_for_stream` as this page gets it. (`now`: the stream's moment; the
    view was presented for it a moment before.)"""
    return card_render(view, csrf_token=token)


def summary_for_stream(user_id, show: str = "") -> str:
    """The summary strip of this user's dashboard (filtered by `show`), for the live stream to
    send with a batch of changes instead of every open page re-fetching it."""
    summary = summary_for_user(user=user_id, show=show)
    context = {"summary": summary, "monitoring": monitoring_status()}
    return render_to_string("pages/partials/_summary_strip.html", context)


def dashboard_cards(
    request, *, show: str = "", connections: list[Connection] | None = None
) -> tuple[Dashboard, list[str]]:
    """The dashboard's data and its cards' HTML, in a fixed number of queries. `show` is a
    summary group: only its cards are listed (the tiles filter), the counts cover all.
    `connections`: the user's connections when the caller has read them already."""
    now = timezone.now()
    last_sweep = monitoring_last_run()
    if connections is None:
        connections = list(connection_list_for_user(user=request.user))
    views = _views(connections, now=now, last_sweep=last_sweep)
    summary = summary_for([v.state for v in views], selected=show)
    if summary.selected:
        views = [v for v in views if v.state.group == summary.selected]
    token = get_token(request)
    html = [card_render(view, csrf_token=token) for view in views]
    dashboard = Dashboard(cards=views, summary=summary, monitoring=monitoring_status(now=now, last=last_sweep), now=now)
    return dashboard, html

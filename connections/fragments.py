"""Connection cards rendered once and reused while what they show has not changed.

Rendering a card (template includes, the uptime bar's SVG, the 30 recent checks behind it)
was most of the dashboard's cost, and the same card was rendered again for every page view
and every live re-fetch. A card's cache key is a digest of everything it shows: the phrases
the presenter computes for *now* ("last successful check 2 min ago", "refreshes in 12 min"
— so a key changes when a phrase does), the broker's name, and the last check time (which
decides the uptime bar). The phrases are cheap; only a card whose key is new is rendered,
and only those cards' recent checks are read (one query for all of them).

The CSRF token differs per browser, so cached HTML holds a placeholder that is replaced with
this request's token on the way out.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields

from django.core.cache import caches
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from connections import presenters
from connections.models import Connection
from connections.selectors import connection_list_for_user

CARD_TEMPLATE = "connections/partials/_card.html"
CARD_SECONDS = 600
_CSRF_MARK = "csrf-placeholder-7f3a9c"
# Fields of the view that are not part of what the card shows, or are covered otherwise.
_NOT_SHOWN = {"connection", "uptime_svg", "disconnect_result"}
_VERSION = "2"  # bump when _card.html changes shape in a way the key cannot see


_cache = None


def _shared_cache():
    """One cache client per process. `django.core.cache.cache` is one per thread or async
    context, i.e. per ASGI request, so each page opened a new Redis connection."""
    global _cache
    if _cache is None:
        _cache = caches.create_connection("default")
    return _cache


def _card_key(view, connection: Connection) -> str:
    parts = [_VERSION, str(connection.last_check_at), str(connection.last_success_at)]
    parts += [f"{f.name}={getattr(view, f.name)!r}" for f in fields(view) if f.name not in _NOT_SHOWN]
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()
    return f"brokerlink:card:{connection.pk}:{digest}"


def _render(connections: list[Connection], *, now, last_sweep=None) -> dict:
    """Render these cards (reading their recent checks in one query); {pk: html}."""
    presenters.recent_checks_attach(connections)
    profiles = presenters.ProfileCache()
    out = {}
    for connection in connections:
        view = presenters.present_connection(
            connection, checks=connection.recent_checks, now=now, profiles=profiles, last_sweep=last_sweep
        )
        out[connection.pk] = render_to_string(CARD_TEMPLATE, {"card": view, "csrf_token": _CSRF_MARK})
    return out


def cards_html(request, connections: list[Connection], *, now=None, last_sweep=None) -> tuple[list, list[str]]:
    """(views, html of each card) for these connections, rendering only cards that changed."""
    now = now or timezone.now()
    profiles = presenters.ProfileCache()
    views = [
        presenters.present_connection(c, checks=[], now=now, profiles=profiles, last_sweep=last_sweep)
        for c in connections
    ]
    keys = [_card_key(view, c) for view, c in zip(views, connections, strict=True)]
    cache = _shared_cache()
    found = cache.get_many(keys) if keys else {}
    missing = [c for c, key in zip(connections, keys, strict=True) if key not in found]
    if missing:
        fresh = _render(missing, now=now, last_sweep=last_sweep)
        new = {key: fresh[c.pk] for c, key in zip(connections, keys, strict=True) if c.pk in fresh}
        cache.set_many(new, CARD_SECONDS)
        found.update(new)
    token = get_token(request)
    return views, [mark_safe(found[key].replace(_CSRF_MARK, token)) for key in keys]  # noqa: S308 - our own render


def dashboard_cached(request, *, show: str = "") -> tuple[presenters.Dashboard, list[str]]:
    """The dashboard's data and its cards' HTML, in a fixed number of queries. `show` is a
    summary group: only its cards are listed (the tiles filter), the counts cover all."""
    now = timezone.now()
    last_sweep = presenters.monitoring_last_run()
    connections = list(connection_list_for_user(user=request.user))
    views, html = cards_html(request, connections, now=now, last_sweep=last_sweep)
    summary = presenters.summary_for([v.state for v in views], selected=show)
    if summary.selected:
        kept = [(v, h) for v, h in zip(views, html, strict=True) if v.state.group == summary.selected]
        views, html = [v for v, _ in kept], [h for _, h in kept]
    dashboard = presenters.Dashboard(
        cards=views, summary=summary, monitoring=presenters.monitoring_status(now=now, last=last_sweep), now=now
    )
    return dashboard, html

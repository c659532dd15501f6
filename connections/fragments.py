"""Connection cards rendered once and reused while what they show has not changed.

Rendering a card (template includes, the uptime bar's SVG, the 30 recent checks behind it)
was most of the dashboard's cost, and the same card was rendered again for every page view
and every live re-fetch. A card's cache key is a digest of everything it shows: the phrases
the presenter computes, the broker's name, and the last check time (which decides the uptime
bar). Only a card whose key is new is rendered, and only those cards' recent checks are read
(one query for all of them).

Words that change with the clock ("40 s ago", "in 12 min", "at 12:00:05") would make every
key new every second, and a connection is checked every minute, so they are left out of the
key: the card shows them as <time datetime=...> elements (presenters.timed_html) whose words
are recomputed for the moment the HTML is served (`times_refresh`). Whether a phrase is
there at all ("any moment now" instead of a countdown, "refreshing now") stays in the key.

The CSRF token differs per browser, so cached HTML holds a placeholder that is replaced with
this request's token on the way out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import fields
from datetime import datetime

from django.core.cache import caches
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from connections import presenters
from connections.models import Connection, ConnectionStatus
from connections.selectors import connection_list_for_user

CARD_TEMPLATE = "connections/partials/_card.html"
CARD_SECONDS = 600
_CSRF_MARK = "csrf-placeholder-7f3a9c"
# Fields of the view that are not part of what the card shows, or are covered otherwise.
_NOT_SHOWN = {"connection", "uptime_svg", "disconnect_result"}
_VERSION = "4"  # bump when _card.html changes shape in a way the key cannot see


_cache = None


def _shared_cache():
    """One cache client per process. `django.core.cache.cache` is one per thread or async
    context, i.e. per ASGI request, so each page opened a new Redis connection."""
    global _cache
    if _cache is None:
        _cache = caches.create_connection("default")
    return _cache


# The clock-dependent words presenters.duration_phrase/ago_phrase/until_phrase/clock_phrase write.
_CLOCK_WORDS = re.compile(r"just now|in \d+ (?:s|min|h|days)\b|\d+ (?:s|min|h|days) ago|\b\d\d:\d\d:\d\d\b")
_TIME_ELEMENT = re.compile(r'<time datetime="([^"]+)" data-rel="(ago|until|countdown|clock)"([^>]*)>[^<]*</time>')


def _card_key(view, connection: Connection) -> str:
    shown = "\x1f".join(f"{f.name}={getattr(view, f.name)!r}" for f in fields(view) if f.name not in _NOT_SHOWN)
    # The moments behind the words stay in the key (the elements' datetimes, the raw times
    # below); the words do not.
    parts = [_VERSION, str(connection.last_check_at), str(connection.last_success_at), _CLOCK_WORDS.sub("~", shown)]
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


def times_refresh(html: str, *, now) -> str:
    """The words of every <time data-rel> element, as they read at `now`."""

    def words(match: re.Match) -> str:
        moment = datetime.fromisoformat(match.group(1))
        kind = match.group(2)
        if kind == "ago":
            text = presenters.ago_phrase(moment, now=now)
        elif kind == "clock":
            text = presenters.clock_phrase(moment)
        else:
            text = presenters.until_phrase(moment, now=now)
        return f'<time datetime="{match.group(1)}" data-rel="{kind}"{match.group(3)}>{text}</time>'

    return _TIME_ELEMENT.sub(words, html)


def cards_html(request, connections: list[Connection], *, now=None, last_sweep=None) -> tuple[list, list[str]]:
    """(views, html of each card) for these connections, rendering only cards that changed."""
    now = now or timezone.now()
    views, raw = _cards_raw(connections, now=now, last_sweep=last_sweep)
    token = get_token(request)
    return views, [card_finish(html, token=token, now=now) for html in raw]


def card_finish(raw: str, *, token: str, now) -> str:
    """A cached card as served: this browser's CSRF token, the clock words as they read now."""
    return mark_safe(times_refresh(raw, now=now).replace(_CSRF_MARK, token))  # noqa: S308 - our own render


def cards_for_stream(user_id, connection_ids) -> dict[str, str]:
    """{connection id: cached card HTML (not finished)} of this user's connections, for the
    live stream to send in its events ("" for a card that left the dashboard: archived or
    removed). One read for all of them; only cards whose key is new are rendered."""
    now = timezone.now()
    rows = list(
        Connection.objects.filter(user_id=user_id, pk__in=list(connection_ids)).select_related(
            "broker_app", "engine_state"
        )
    )
    live = [c for c in rows if c.status != ConnectionStatus.DISCONNECTED]
    _, raw = _cards_raw(live, now=now, last_sweep=presenters.monitoring_last_run())
    out = {str(pk): "" for pk in connection_ids}
    out.update({str(c.pk): html for c, html in zip(live, raw, strict=True)})
    for c in rows:
        if c.status == ConnectionStatus.DISCONNECTED and c.archived_at is None:
            # As the card view answers it: the final card with its revocation result, not cached.
            out[str(c.pk)] = render_to_string(CARD_TEMPLATE, {"card": presenters.card_for(c), "csrf_token": _CSRF_MARK})
    return out


def summary_for_stream(user_id, show: str = "") -> str:
    """The summary strip of this user's dashboard (filtered by `show`), for the live stream to
    send with a batch of changes instead of every open page re-fetching it."""
    summary = presenters.summary_for_user(user=user_id, show=show)
    context = {"summary": summary, "monitoring": presenters.monitoring_status()}
    return render_to_string("connections/partials/_summary_strip.html", context)


def _cards_raw(connections: list[Connection], *, now, last_sweep) -> tuple[list, list[str]]:
    """(views, cached HTML of each card), rendering and caching the cards whose key is new."""
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
    return views, [found[key] for key in keys]


def dashboard_cached(
    request, *, show: str = "", connections: list[Connection] | None = None
) -> tuple[presenters.Dashboard, list[str]]:
    """The dashboard's data and its cards' HTML, in a fixed number of queries. `show` is a
    summary group: only its cards are listed (the tiles filter), the counts cover all.
    `connections`: the user's connections when the caller has read them already."""
    now = timezone.now()
    last_sweep = presenters.monitoring_last_run()
    if connections is None:
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

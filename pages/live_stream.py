"""The event stream an open page holds: server-sent events for one user's connections, fed by
this process's hub (pages.live), ending with a `bye` after `LIVE_STREAM_MAX_SECONDS`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from django.conf import settings
from django.utils import timezone

from pages import fragments
from pages.live import Subscriber, event_wait, hub_get, stream_open

KEEPALIVE_SECONDS = 15.0
# A stream ends after this long; the browser reconnects at once (`retry:`), which bounds
# how long a stream holds a worker and picks up a new deployment.
STREAM_MAX_SECONDS = 300.0
RETRY_MS = 1000


def stream_max_seconds() -> float:
    return float(getattr(settings, "LIVE_STREAM_MAX_SECONDS", STREAM_MAX_SECONDS))


def sse(event: str, data: str = "") -> str:
    """One event; data of several lines (a card's HTML) as one `data:` line each."""
    lines = data.replace("\r", "").split("\n")
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


async def connection_stream(
    user_id,
    *,
    connection_id=None,
    max_seconds: float | None = None,
    subscriber: Subscriber | None = None,
    csrf_token: str | None = None,
    show: str = "",
) -> AsyncIterator[str]:
    """Server-sent events for one user's connections (or just `connection_id`) until
    `max_seconds` pass or the client leaves. Raises TooManyStreams when over a cap (the view
    opens the stream first with `stream_open`, so it can answer with a status instead).

    A dashboard's stream (no `connection_id`, and the page's `csrf_token` for the cards'
    forms) sends a changed card itself, `card-<id>` with its HTML, which the page swaps in
    without a request; otherwise, and when a card cannot be had, `conn-<id>`, and the page
    re-fetches it. Likewise the summary strip (filtered by the page's `show`): `summary-html`
    with the strip, else `summary`."""
    hub = hub_get()
    max_seconds = stream_max_seconds() if max_seconds is None else max_seconds
    sub = subscriber or await stream_open(user_id, connection_id)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        yield sse("hello", "live")
        started = last_sent = time.monotonic()
        while True:
            now = time.monotonic()
            left = max_seconds - (now - started)
            if left <= 0:
                break
            wait = min(left, KEEPALIVE_SECONDS - (now - last_sent))
            if wait > 0:
                await event_wait(sub.wake, wait)
            changed, summary = sub.take()
            if changed or summary:
                cards = {}
                pushing = connection_id is None and csrf_token is not None
                if pushing and not await hub.signed_in(sub):
                    # Signed out since the stream opened (or not known): no card goes out; the
                    # page re-fetches, and a signed-out re-fetch says so (pages.middleware).
                    pushing = False
                if changed and pushing:
                    cards = await hub.cards_get(sub.user_id, list(changed))
                now = timezone.now()
                for pk, status in changed.items():
                    if pk in cards:
                        card = fragments.card_finish(cards[pk], token=csrf_token, now=now) if cards[pk] else ""
                        yield sse(f"card-{pk}", card)
                    else:
                        yield sse(f"conn-{pk}", status)
                strip = await hub.summary_get(sub.user_id, show) if pushing else None
                yield sse("summary-html", strip) if strip else sse("summary", str(len(changed)))
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
                last_sent = time.monotonic()
                yield ": keepalive\n\n"
        # A scheduled end, said as such: the page closes this stream and opens a new one
        # (sse-close="bye") instead of seeing a dropped connection, an error.
        yield sse("bye", "reopen")
    finally:
        hub.unsubscribe(sub)

"""The busy answer: no page thread (common.threadlanes) or no database connection (ops.busy)
is free. A page view gets the styled 503 page (templates/503.html); an htmx re-fetch gets a 204
that keeps what the page shows (htmx swaps nothing on a 204) with `X-Brokerlink-Busy`, so
live.js asks again later. Clients that read the body as text get the sentence."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

# When the page cannot be rendered, and for clients that read the body as text.
BUSY_MESSAGE = "brokerlink is busy right now. Try again in a few seconds."
BUSY_BODY = BUSY_MESSAGE.encode()

_busy_page: bytes | None = None


def busy_page() -> bytes:
    """The 503 page, rendered once per process (no request, user or database needed)."""
    global _busy_page
    if _busy_page is None:
        from django.template.loader import render_to_string

        try:
            _busy_page = render_to_string("503.html").encode()
        except Exception:  # noqa: BLE001 - a busy answer must never fail: the plain sentence
            logger.exception("common.busy.busy_page_failed")
            return BUSY_BODY
    return _busy_page


def busy_response_parts(*, htmx: bool) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of the busy answer; see the module."""
    common = [("retry-after", "5"), ("cache-control", "no-store")]
    if htmx:
        return 204, [*common, ("x-brokerlink-busy", "1")], b""
    body = busy_page()
    kind = "text/html; charset=utf-8" if body is not BUSY_BODY else "text/plain; charset=utf-8"
    return 503, [*common, ("content-type", kind), ("content-length", str(len(body)))], body

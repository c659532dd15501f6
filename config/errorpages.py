"""Error pages in the app's style (templates/403.html, 404.html, 500.html, 503.html).

Django renders 403/404/500 from these templates by itself in production. Under DEBUG (`make
run`) it shows its technical 404 page instead (every URL pattern, unstyled under the CSP) for
a link that leads nowhere or to a connection that is gone: `StyledNotFoundMiddleware` shows
the styled page for pages a person opens (not the API, not htmx fragments). The technical
500 page stays under DEBUG: it is the developer's traceback.

The busy answer (no page thread or no database connection free) is `busy_response_parts`:
the styled 503 page for a page view, and for an htmx re-fetch a 204 that keeps what the page
shows (htmx swaps nothing on a 204) with `X-Brokerlink-Busy`, so live.js asks again later.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import Http404
from django.views import defaults

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
            logger.exception("config.errorpages.busy_page_failed")
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


def _wants_page(request) -> bool:
    return (
        request.method in ("GET", "HEAD")
        and not getattr(request, "htmx", False)
        and not request.path.startswith("/api/")
        and "text/html" in request.headers.get("Accept", "text/html")
    )


class StyledNotFoundMiddleware:
    """Under DEBUG, the styled 404 page instead of Django's technical one (see the module)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            settings.DEBUG
            and response.status_code == 404
            and getattr(request, "resolver_match", None) is None  # no view ran: the resolver's 404
            and _wants_page(request)
        ):
            return defaults.page_not_found(request, Http404())
        return response

    def process_exception(self, request, exception):
        if settings.DEBUG and isinstance(exception, Http404) and _wants_page(request):
            return defaults.page_not_found(request, exception)
        return None

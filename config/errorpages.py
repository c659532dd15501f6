"""Error pages in the app's style (templates/403.html, 404.html, 500.html, 503.html).

Django renders 403/404/500 from these templates by itself in production. Under DEBUG (`make
run`) it shows its technical 404 page instead (every URL pattern, unstyled under the CSP) for
a link that leads nowhere or to a connection that is gone: `StyledNotFoundMiddleware` shows
the styled page for pages a person opens (not the API, not htmx fragments). The technical
500 page stays under DEBUG: it is the developer's traceback.

The busy answer (no page thread or no database connection free) is `common.busy`.
"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404
from django.views import defaults


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

"""Session hardening for signed-in people (security finding 8).

- Absolute lifetime: a session older than SESSION_ABSOLUTE_SECONDS since sign-in ends,
  however active.
- Idle timeout (SESSION_COOKIE_AGE): a request renews the session at most once a minute,
  not on every request: a write per request (SESSION_SAVE_EVERY_REQUEST) made every open page
  and every live stream write the session, and concurrent saves of one session answered 400.
  Live streams never renew it: an open tab is not a person being active.
- `Cache-Control: no-store` on every page answered to a signed-in person, so a shared
  computer's browser cache or a proxy keeps no copy of their connections.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import logout
from django.shortcuts import redirect
from django.utils.cache import patch_cache_control

STARTED_KEY = "accounts.session_started_at"
RENEWED_KEY = "accounts.session_renewed_at"
RENEW_EVERY_SECONDS = 60
# Live streams (/connections/stream/, /connections/<id>/stream/).
STREAM_SUFFIX = "/stream/"


class SessionHardeningMiddleware:
    # Both kinds, so the async live streams are not pushed into a thread by this middleware.
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return self._after(request, self._before(request) or self.get_response(request))

    async def __acall__(self, request):
        expired = await sync_to_async(self._before)(request)
        response = expired or await self.get_response(request)
        return await sync_to_async(self._after)(request, response)

    @staticmethod
    def _before(request):
        """None to go on, or the redirect that ends a session past its absolute lifetime."""
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        started = request.session.get(STARTED_KEY)
        now = time.time()
        stream = request.path.endswith(STREAM_SUFFIX)  # live streams only read the session
        if started is None:
            if not stream:
                request.session[STARTED_KEY] = now
        elif now - float(started) > settings.SESSION_ABSOLUTE_SECONDS:
            logout(request)
            return redirect(f"{settings.LOGIN_URL_PATH}?{urlencode({'next': request.get_full_path()})}")
        if stream:
            return None
        if now - float(request.session.get(RENEWED_KEY, 0)) >= RENEW_EVERY_SECONDS:
            request.session[RENEWED_KEY] = now  # modified: saved, and the cookie's expiry moves on
        return None

    @staticmethod
    def _after(request, response):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            patch_cache_control(response, no_store=True, private=True)
        return response


def session_started(sender, request, user, **kwargs) -> None:
    """user_logged_in: the absolute lifetime counts from the sign-in itself."""
    if request is not None and hasattr(request, "session"):
        request.session[STARTED_KEY] = time.time()

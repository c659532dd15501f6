"""Async-capable stand-ins for the two sync-only middlewares of the main settings, used by the
standalone sandbox server (config/settings_sandbox.py). With only async-capable middleware, Django
runs the async `/v1/account` view on the event loop instead of funnelling every request
through its single sync thread, which capped the throughput of a sandbox
with latency faults (docs/benchmarks.md#figures-the-code-cites)."""

from __future__ import annotations

import uuid

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings

from ops.logging import _REQUEST_ID_RE, REQUEST_ID_HEADER, RequestIdMiddleware, request_id_var


class SandboxRequestIdMiddleware(RequestIdMiddleware):
    """ops.logging.RequestIdMiddleware, in both modes."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self.get_response):
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = await self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class SandboxStaticMiddleware:
    """WhiteNoise for the static URL prefix only; every other request skips it (it would
    only pass them through)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        from whitenoise.middleware import WhiteNoiseMiddleware

        self.get_response = get_response
        self.prefix = settings.STATIC_URL or "/static/"
        if not self.prefix.startswith("/"):
            self.prefix = "/" + self.prefix
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
            self.whitenoise = WhiteNoiseMiddleware(async_to_sync(get_response))
        else:
            self.whitenoise = WhiteNoiseMiddleware(get_response)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self.whitenoise(request)

    async def _acall(self, request):
        if request.path.startswith(self.prefix):
            return await sync_to_async(self.whitenoise, thread_sensitive=True)(request)
        return await self.get_response(request)

"""The most viewed pages run on a few reused threads per web process, in arrival order.

Django's ASGI handler runs each request's synchronous code on a thread of its own, started
for that request. With 25 page views in flight in one process that is 25 threads contending
for the GIL, and CPU per view rose with the number of threads (measured:
docs/benchmarks.md#figures-the-code-cites; capacity: docs/operations.md, Scaling).

So the views marked `@page_threads` (the dashboard, a connection's page, the cards, panel
and summary the live pages re-fetch: database reads only, no call to a broker) take one of
WEB_PAGE_THREADS lanes for a GET: a single-thread executor kept for the life of the process
(asgiref's `ThreadSensitiveContext(executor=...)`); requests beyond that wait in the event
loop, first come first served. Everything else keeps Django's thread per request: views that
call a broker (OAuth callback, Check now, disconnect) may wait seconds on it and must not hold
up page views, async views (live streams) wait on the loop, and an unmarked view is never
assumed safe. A request that finds no lane free within DB_POOL_TIMEOUT gets the same busy
answer as one that finds no database connection (ops.busy): the styled 503 page, or for an
htmx re-fetch (a live card) a 204 that keeps the card the page shows (common.busy).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext

from common.busy import busy_response_parts

logger = logging.getLogger(__name__)

_MARK = "page_threads"


def page_threads(view):
    """Mark a view as a database-only page read that may run on the shared page threads."""
    setattr(view, _MARK, True)
    return view


class PageThreads:
    """ASGI wrapper around Django's application; see the module."""

    def __init__(self, app, *, size: int, timeout: float) -> None:
        self.app = app
        self.size = size
        self.timeout = timeout
        self._free: asyncio.Queue | None = None
        self._loop = None
        self._marked: dict[str, bool] = {}

    def _lanes(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._free is None or self._loop is not loop:  # a new event loop (tests): new threads
            while self._free is not None and not self._free.empty():
                self._free.get_nowait().shutdown(wait=False)
            self._free, self._loop = asyncio.Queue(), loop
            for n in range(self.size):
                self._free.put_nowait(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"page-{n}"))
        return self._free

    def _on_lanes(self, scope) -> bool:
        if self.size <= 0 or scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return False
        path = scope["path"]
        known = self._marked.get(path)
        if known is None:
            from django.urls import Resolver404, resolve

            try:
                known = bool(getattr(resolve(path).func, _MARK, False))
            except Resolver404:
                known = False
            if len(self._marked) > 4096:  # paths carry ids: keep the memo bounded
                self._marked.clear()
            self._marked[path] = known
        return known

    async def __call__(self, scope, receive, send):
        if not self._on_lanes(scope):
            return await self.app(scope, receive, send)
        free = self._lanes()
        try:
            executor = await asyncio.wait_for(free.get(), self.timeout)
        except TimeoutError:
            logger.warning("ops.web.busy", extra={"path": scope["path"]})
            await _busy(send, htmx=(b"hx-request", b"true") in scope.get("headers", ()))
            return
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.app(scope, receive, send)
        finally:
            free.put_nowait(executor)


async def _busy(send, *, htmx: bool) -> None:
    """The busy answer (common.busy): the styled 503 page, or for an htmx re-fetch a 204
    that keeps the card the page already shows."""
    status, headers, body = busy_response_parts(htmx=htmx)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(name.encode(), value.encode()) for name, value in headers],
        }
    )
    await send({"type": "http.response.body", "body": body})

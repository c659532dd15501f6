"""common.threadlanes: the most viewed page reads share a few reused threads per web process,
first come first served; everything else keeps a thread of its own; no free thread within
the wait is a 503 "busy", never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from asgiref.sync import ThreadSensitiveContext, sync_to_async

from common.threadlanes import PageThreads

DASHBOARD = "/connections/"  # marked @page_threads
CATALOG = "/connections/connect/"  # not marked


def scope(path: str, method: str = "GET") -> dict:
    return {"type": "http", "method": method, "path": path, "headers": []}


class Recorder:
    """An inner ASGI app whose synchronous part notes its thread and can be held; like Django's
    handler it opens a ThreadSensitiveContext per request (a thread of its own, unless the
    page threads already gave it one)."""

    def __init__(self, hold: float = 0.0, fail: bool = False, meet: threading.Barrier | None = None):
        self.hold, self.fail, self.meet = hold, fail, meet
        self.threads: list[str] = []
        self.order: list[int] = []
        self.running = 0
        self.most = 0

    async def __call__(self, scope, receive, send):
        def work():
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.append(threading.current_thread().name)
            if self.meet is not None:  # go on only once another request runs at the same time
                self.meet.wait(timeout=20)
            threading.Event().wait(self.hold)
            self.running -= 1
            if self.fail:
                raise RuntimeError("the view crashed")

        async with ThreadSensitiveContext():
            await sync_to_async(work, thread_sensitive=True)()
        self.order.append(scope["n"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(app, request_scope) -> int:
    statuses = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    await app(request_scope, receive, send)
    return statuses[0]


def test_page_reads_share_two_reused_threads_in_arrival_order():
    # Each request waits until a second one runs beside it (a barrier, not a pause): two threads
    # serve them in pairs, and a third running at once would break the barrier.
    inner = Recorder(meet=threading.Barrier(2))
    app = PageThreads(inner, size=2, timeout=30)

    async def main():
        return await asyncio.gather(*(call(app, dict(scope(DASHBOARD), n=i)) for i in range(12)))

    assert asyncio.run(main()) == [200] * 12
    assert inner.most == 2  # two at once, never more
    assert set(inner.threads) == {"page-0_0", "page-1_0"}
    # First come first served: requests finish in arrival order, pair by pair.
    pairs = [sorted(inner.order[i : i + 2]) for i in range(0, 12, 2)]
    assert pairs == [[i, i + 1] for i in range(0, 12, 2)]


def test_other_views_and_writes_keep_a_thread_of_their_own():
    inner = Recorder(hold=0.05)
    app = PageThreads(inner, size=1, timeout=10)

    async def main():
        requests = [dict(scope(CATALOG), n=i) for i in range(3)] + [dict(scope(DASHBOARD, "POST"), n=3)]
        return await asyncio.gather(*(call(app, s) for s in requests))

    assert asyncio.run(main()) == [200] * 4
    assert inner.most == 4  # none of them waited for the single page thread
    assert not any(name.startswith("page-") for name in inner.threads)


def test_no_free_thread_within_the_wait_is_a_503_busy_and_a_crash_gives_the_thread_back():
    slow = Recorder(hold=0.5)
    app = PageThreads(slow, size=1, timeout=0.1)

    async def main():
        return await asyncio.gather(call(app, dict(scope(DASHBOARD), n=0)), call(app, dict(scope(DASHBOARD), n=1)))

    assert sorted(asyncio.run(main())) == [200, 503]

    crashing = Recorder(fail=True)
    app = PageThreads(crashing, size=1, timeout=1)

    async def twice():
        for n in range(2):
            with contextlib.suppress(RuntimeError):
                await call(app, dict(scope(DASHBOARD), n=n))
        return len(crashing.threads)

    assert asyncio.run(twice()) == 2  # the second request got the thread the first one crashed on

"""The event stream itself: a status change becomes a named `conn-<id>` event, by Redis pub/sub
and by database polling. Every wait here waits for an event with a deadline (how soon an event
arrives is measured by bench/pages.py, not asserted here)."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from connections.models import ConnectionStatus
from connections.state import connection_transition
from engine.models import EngineState
from pages import live, live_stream
from tests.support import wait_for_async

pytestmark = pytest.mark.django_db(transaction=True)


async def _first_event(stream, name: str, timeout: float = 10) -> str:
    """The first `name` event on the stream (the timeout only bounds a failure)."""
    async with asyncio.timeout(timeout):
        async for chunk in stream:
            if chunk.startswith(f"event: {name}\n"):
                return chunk
    raise AssertionError("stream ended")


def _run(connection, *, redis_url):
    async def scenario():
        with override_settings(REDIS_URL=redis_url):
            stream = live_stream.connection_stream(connection.user_id, max_seconds=10)
            assert "retry:" in await anext(stream)
            # The stream has subscribed and read its baseline before it says hello (stream_open).
            assert "event: hello" in await anext(stream)
            pending = asyncio.ensure_future(_first_event(stream, f"conn-{connection.pk}"))
            await sync_to_async(connection_transition)(
                connection=connection, to_status=ConnectionStatus.BROKER_OUTAGE, message="test"
            )
            event = await pending
            await stream.aclose()
            # the async ORM's worker thread holds a connection the test database teardown would wait for
            await sync_to_async(connections.close_all)()
            return event

    # A thread of its own: an event loop may already run in this one (Playwright's, say).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


def test_status_change_reaches_the_stream_by_redis(make_connection, settings):
    assert settings.REDIS_URL, "the test settings use Redis"
    connection = make_connection()
    event = _run(connection, redis_url=settings.REDIS_URL)
    assert event == f"event: conn-{connection.pk}\ndata: broker_outage\n\n"


def test_status_change_reaches_the_stream_by_database_polling(make_connection):
    connection = make_connection()
    event = _run(connection, redis_url="")
    assert event == f"event: conn-{connection.pk}\ndata: broker_outage\n\n"


def test_publish_never_raises_when_redis_is_down(make_connection, settings, django_capture_on_commit_callbacks):
    from connections import display

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    display._client = None
    try:
        with django_capture_on_commit_callbacks(execute=True):
            connection_transition(connection=make_connection(), to_status=ConnectionStatus.DEGRADED)
    finally:
        display._client = None


class _RedisProxy:
    """A TCP forwarder to the real Redis that the test can cut and restore: a Redis outage
    as the web process sees it, without touching the shared server."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = None
        self.server = None
        self.writers = set()

    async def _pipe(self, reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port or 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self):
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()


def test_stream_falls_back_to_the_database_and_returns_to_redis(make_connection, settings, monkeypatch):
    from urllib.parse import urlsplit

    from connections import display

    monkeypatch.setattr(live, "REDIS_RETRY_SECONDS", 0.3)
    monkeypatch.setattr(display, "_client", None)  # the publishing client of this test's Redis URL
    connection = make_connection()
    real = urlsplit(settings.REDIS_URL)

    async def scenario():
        proxy = _RedisProxy(real.port or 6379)
        await proxy.start()
        with override_settings(REDIS_URL=f"redis://127.0.0.1:{proxy.port}{real.path}"):
            stream = live_stream.connection_stream(connection.user_id, max_seconds=30)
            await anext(stream)
            await anext(stream)
            hub = live.hub_get()
            assert hub.stats()["feed"] == "redis"
            # Which polls finished, and whether Redis was up when each began: the poll that
            # begins once Redis is back is the hub's catch-up poll.
            polls_on_redis = []
            poll_once = hub._poll_once

            async def poll_once_observed():
                on_redis = hub.redis_ok
                await poll_once()
                polls_on_redis.append(on_redis)

            hub._poll_once = poll_once_observed

            await proxy.cut()  # Redis "goes away"
            await wait_for_async(lambda: not hub.redis_ok, timeout=10, what="the hub notices Redis is gone")
            # While it is away the hub polls the database: a change nobody published arrives.
            await sync_to_async(EngineState.objects.filter(pk=connection.pk).update)(health_score=12)
            polled = await _first_event(stream, f"conn-{connection.pk}")

            await proxy.start()  # Redis is back, same address
            await wait_for_async(lambda: hub.redis_ok, timeout=10, what="the hub subscribes again")
            # Its catch-up poll would overwrite the made-up version below: wait until it is done.
            await wait_for_async(lambda: any(polls_on_redis), timeout=10, what="the catch-up poll")
            # Back on Redis: a published change arrives (the database has not changed, so only
            # the subscription can deliver it).
            change = [str(connection.user_id), str(connection.pk), "degraded", "from-redis"]
            await sync_to_async(display.changes_publish)([change])
            published = await _first_event(stream, f"conn-{connection.pk}")
            feed = hub.stats()["feed"]
            await stream.aclose()
            await proxy.cut()
            await sync_to_async(connections.close_all)()
            return polled, published, feed

    with ThreadPoolExecutor(1) as pool:
        polled, published, feed = pool.submit(asyncio.run, scenario()).result()
    assert polled.startswith(f"event: conn-{connection.pk}\n")
    assert published == f"event: conn-{connection.pk}\ndata: degraded\n\n"
    assert feed == "redis"


def test_a_heartbeat_that_changes_nothing_shown_sends_no_event_but_a_health_change_does(make_connection):
    """Database poll (embedded default): the last check and latency move, nothing is sent; the
    health score moves, the card's event is sent. "Nothing is sent" is proven by a later event
    that must come after it: a second connection changes after the first one's no-op update,
    so the poll that reports the second has seen the first."""
    connection = make_connection()
    witness = make_connection()

    async def scenario():
        with override_settings(REDIS_URL=""):
            stream = live_stream.connection_stream(connection.user_id, max_seconds=30)
            await anext(stream)
            await anext(stream)
            rows = EngineState.objects.filter(pk=connection.pk)
            await sync_to_async(rows.update)(last_latency_ms=7, last_check_at=timezone.now())
            await sync_to_async(EngineState.objects.filter(pk=witness.pk).update)(health_score=41)
            before = []  # everything up to the end (the summary) of the batch that reports the witness
            async with asyncio.timeout(10):
                async for chunk in stream:
                    before.append(chunk)
                    seen_witness = any(c.startswith(f"event: conn-{witness.pk}\n") for c in before)
                    if seen_witness and chunk.startswith("event: summary\n"):
                        break
            await sync_to_async(rows.update)(health_score=40)
            event = await _first_event(stream, f"conn-{connection.pk}")
            await stream.aclose()
            await sync_to_async(connections.close_all)()
            return before, event

    with ThreadPoolExecutor(1) as pool:
        before, event = pool.submit(asyncio.run, scenario()).result()
    assert [c for c in before if c.startswith(f"event: conn-{connection.pk}\n")] == []
    assert event == f"event: conn-{connection.pk}\ndata: connected\n\n"

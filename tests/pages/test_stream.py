"""The event stream itself: a status change becomes a named `conn-<id>` event within 2 s,
by Redis pub/sub and by database polling."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import override_settings

from connections import live
from connections.models import ConnectionStatus
from connections.state import connection_transition

pytestmark = pytest.mark.django_db(transaction=True)


async def _first_event(stream, name: str, timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        async for chunk in stream:
            if chunk.startswith(f"event: {name}\n"):
                return chunk, time.monotonic() - started
    raise AssertionError("stream ended")


def _run(connection, *, redis_url):
    async def scenario():
        with override_settings(REDIS_URL=redis_url):
            stream = live.connection_stream(connection.user_id, max_seconds=10)
            assert "retry:" in await anext(stream)
            assert "event: hello" in await anext(stream)
            # let the stream take its snapshot and subscribe before the change
            pending = asyncio.ensure_future(_first_event(stream, f"conn-{connection.pk}", timeout=5))
            await asyncio.sleep(0.3)
            await sync_to_async(connection_transition)(
                connection=connection, to_status=ConnectionStatus.BROKER_OUTAGE, message="test"
            )
            event, elapsed = await pending
            await stream.aclose()
            # the async ORM's worker thread holds a connection the test database teardown would wait for
            await sync_to_async(connections.close_all)()
            return event, elapsed

    # A thread of its own: an event loop may already run in this one (Playwright's, say).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


def test_status_change_reaches_the_stream_by_redis(make_connection, settings):
    assert settings.REDIS_URL, "the test settings use Redis"
    connection = make_connection()
    event, elapsed = _run(connection, redis_url=settings.REDIS_URL)
    assert event == f"event: conn-{connection.pk}\ndata: broker_outage\n\n"
    assert elapsed < 2


def test_status_change_reaches_the_stream_by_database_polling(make_connection):
    connection = make_connection()
    event, elapsed = _run(connection, redis_url="")
    assert event == f"event: conn-{connection.pk}\ndata: broker_outage\n\n"
    assert elapsed < 2


def test_publish_never_raises_when_redis_is_down(make_connection, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    live._client = None
    try:
        live.publish_connection_changed(make_connection())
    finally:
        live._client = None

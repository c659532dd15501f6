"""The standalone sandbox server tunes the garbage collector at its start (ASGI lifespan), not
when sandbox.asgi is imported (a test run or a tool importing it keeps Python's defaults)."""

from __future__ import annotations

import asyncio
import gc

from sandbox import asgi


def test_the_gc_is_tuned_at_the_servers_start_not_on_import():
    assert gc.get_threshold()[0] != 20_000  # imported above: nothing tuned yet
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    threshold = gc.get_threshold()
    try:
        asyncio.run(asgi.application({"type": "lifespan"}, receive, send))
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert gc.get_threshold()[0] == 20_000 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)

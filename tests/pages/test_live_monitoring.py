"""Open streams hear when monitoring stops or starts again (the summary strip's banner), so a
page with its stream open needs no periodic summary poll (issue 27)."""

import asyncio

import pytest

from pages import live, live_stream

pytestmark = pytest.mark.django_db


def test_a_monitoring_flip_sends_a_summary_to_every_stream_and_nothing_else_does():
    async def main():
        hub = live.Hub()
        try:
            ada, bob = hub.subscribe("ada"), hub.subscribe("bob")
            hub.monitoring_seen(True)  # the first reading is the baseline
            assert ada.take() == ({}, False)
            hub.monitoring_seen(True)
            assert ada.take() == ({}, False)
            hub.monitoring_seen(False)  # the sweep stopped
            assert ada.take() == ({}, True) and bob.take() == ({}, True)
            hub.monitoring_seen(False)
            assert ada.take() == ({}, False)
            hub.monitoring_seen(True)  # it runs again
            assert bob.take() == ({}, True)
        finally:
            for task in hub._tasks:
                task.cancel()

    asyncio.run(main())


def test_the_stream_says_summary_for_a_monitoring_flip_and_bye_at_its_scheduled_end():

    async def main():
        hub = live.hub_get()
        sub = hub.subscribe("carol")
        stream = live_stream.connection_stream("carol", subscriber=sub, max_seconds=1)
        events = [await anext(stream), await anext(stream)]  # retry, hello
        sub.put_summary()
        events.append(await anext(stream))
        events.extend([chunk async for chunk in stream])
        return events

    events = asyncio.run(main())
    assert events[1] == live_stream.sse("hello", "live")
    assert events[2] == live_stream.sse("summary", "0")
    assert events[-1] == live_stream.sse("bye", "reopen")

"""What open pages hear on the live channel, for the outbox tests."""

from __future__ import annotations

import json
from contextlib import contextmanager

import redis
from django.conf import settings

from connections import display

_END = ["end-of-test", "end-of-test", "", ""]


@contextmanager
def live_messages():
    """Yields a list that, after the block, holds every live message ({"changes": [...]})
    published during it. Ends on a marker published last, so no wait is for time."""
    assert settings.REDIS_URL, "the test settings use Redis"
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(display.live_channel())
    assert pubsub.get_message(timeout=10)["type"] == "subscribe"
    heard: list[list] = []
    try:
        yield heard
        display.changes_publish([_END])
        while True:
            message = pubsub.get_message(timeout=10)
            assert message is not None, "the end marker never arrived"
            if message["type"] != "message":
                continue
            changes = json.loads(message["data"])["changes"]
            if changes == [_END]:
                break
            heard.append(changes)
    finally:
        pubsub.close()
        client.close()

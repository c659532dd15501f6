"""Live updates for open pages: who publishes a change, and the event stream that carries it.

Two feeds, one stream format (server-sent events, one named event per connection,
`conn-<uuid>`, plus `summary` for the strip):

- Redis pub/sub when `settings.REDIS_URL` is set: `connection_transition` publishes
  {id, status} on the owner's channel after the transaction commits; the stream listens.
  A slow database poll still runs beside it, for changes that are not status transitions
  (a new health score, a check that passed again).
- Database polling (every second) on the embedded default, reading `updated_at` and
  `status_changed_at` of the user's connections: no server needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

from django.conf import settings
from django.db import transaction

from connections.models import Connection

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# With Redis feeding status changes, the database poll only catches score/latency updates.
REDIS_POLL_SECONDS = 5.0
KEEPALIVE_SECONDS = 15.0
# A stream ends after this long; the browser reconnects at once (`retry:`), which bounds
# how long a stream holds a worker and picks up a new deployment.
STREAM_MAX_SECONDS = 300.0
RETRY_MS = 1000

_client = None


def channel_for(user_id) -> str:
    prefix = getattr(settings, "CACHES", {}).get("default", {}).get("KEY_PREFIX", "") or ""
    return f"{prefix}brokerlink:live:user:{user_id}"


def _redis():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _client


def _publish(user_id, payload: dict) -> None:
    try:
        _redis().publish(channel_for(user_id), json.dumps(payload))
    except Exception as exc:  # noqa: BLE001 - best effort: pages fall back to polling
        logger.warning("connections.live.publish_failed", extra={"error": type(exc).__name__})


def publish_connection_changed(connection: Connection) -> None:
    """Tell the owner's open pages that this connection changed. Never raises.

    Sent after commit, so a page that re-fetches the card reads the new row."""
    if not getattr(settings, "REDIS_URL", ""):
        return  # the stream polls the database instead
    try:
        payload = {"id": str(connection.pk), "status": connection.status}
        user_id = connection.user_id
        transaction.on_commit(lambda: _publish(user_id, payload))
    except Exception as exc:  # noqa: BLE001
        logger.warning("connections.live.publish_failed", extra={"error": type(exc).__name__})


# --- the stream -----------------------------------------------------------------------


def sse(event: str, data: str = "") -> str:
    return f"event: {event}\ndata: {data}\n\n"


async def _snapshot(user_id, connection_id=None) -> dict[str, tuple]:
    rows = Connection.objects.filter(user_id=user_id)
    if connection_id is not None:
        rows = rows.filter(pk=connection_id)
    rows = rows.values_list("id", "status", "status_changed_at", "updated_at")
    return {str(pk): (status, changed, updated) async for pk, status, changed, updated in rows}


def _changes(before: dict, after: dict) -> list[tuple[str, str]]:
    return [(pk, row[0]) for pk, row in after.items() if before.get(pk) != row]


async def _redis_messages(user_id):
    """An async pub/sub subscription, or None when Redis is not configured or not reachable."""
    if not getattr(settings, "REDIS_URL", ""):
        return None
    try:
        import redis.asyncio as aredis

        client = aredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
        pubsub = client.pubsub()
        await pubsub.subscribe(channel_for(user_id))
        pubsub.owner_client = client
        return pubsub
    except Exception as exc:  # noqa: BLE001 - fall back to database polling
        logger.warning("connections.live.subscribe_failed", extra={"error": type(exc).__name__})
        return None


async def connection_stream(
    user_id, *, connection_id=None, max_seconds: float = STREAM_MAX_SECONDS
) -> AsyncIterator[str]:
    """Server-sent events for one user's connections (or just `connection_id`) until
    `max_seconds` pass or the client leaves."""
    # Subscribe and take the snapshot before the first byte: the page counts as live from
    # then on, and a change in between would otherwise be in neither.
    pubsub = await _redis_messages(user_id)
    known = await _snapshot(user_id, connection_id)
    yield f"retry: {RETRY_MS}\n\n"
    yield sse("hello", "live")
    started = last_poll = last_keepalive = time.monotonic()
    poll_every = REDIS_POLL_SECONDS if pubsub is not None else POLL_SECONDS
    try:
        while time.monotonic() - started < max_seconds:
            changed: dict[str, str] = {}
            if pubsub is not None:
                try:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
                except Exception as exc:  # noqa: BLE001 - Redis went away: poll the database instead
                    logger.warning("connections.live.redis_lost", extra={"error": type(exc).__name__})
                    pubsub, poll_every = None, POLL_SECONDS
                    message = None
                if message and message.get("type") == "message":
                    try:
                        payload = json.loads(message["data"])
                        if connection_id is None or str(payload["id"]) == str(connection_id):
                            changed[str(payload["id"])] = str(payload.get("status", ""))
                    except (ValueError, KeyError, TypeError):
                        pass
            else:
                await asyncio.sleep(POLL_SECONDS)
            now = time.monotonic()
            if now - last_poll >= poll_every or changed:
                last_poll = now
                current = await _snapshot(user_id, connection_id)
                for pk, status in _changes(known, current):
                    changed.setdefault(pk, status)
                known = current
            for pk, status in changed.items():
                yield sse(f"conn-{pk}", status)
            if changed:
                yield sse("summary", str(len(changed)))
                last_keepalive = now
            elif now - last_keepalive >= KEEPALIVE_SECONDS:
                last_keepalive = now
                yield ": keepalive\n\n"
    finally:
        if pubsub is not None:
            try:
                await pubsub.aclose()
                await pubsub.owner_client.aclose()
            except Exception:  # noqa: BLE001, S110 - closing a dead connection
                pass

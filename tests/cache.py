"""The test runs' cache: the production Redis cache, except that `clear()` deletes this run's
keys only. Django's RedisCache.clear() is FLUSHDB, and every test run on a machine shares the
Redis database: a flush by one run's test would drop the others' Celery queue bindings and
queued messages (a task sent afterwards is silently lost) and their cached values."""

from __future__ import annotations

import redis

from ops.cache import UNAVAILABLE, TolerantRedisCache


class RunOwnRedisCache(TolerantRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self.location = server if isinstance(server, str) else server[0]

    def clear(self) -> bool:
        client = redis.Redis.from_url(self.location, socket_connect_timeout=1, socket_timeout=1)
        try:
            keys = list(client.scan_iter(match=f"{self.key_prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
        except UNAVAILABLE:
            return False  # like the production cache: Redis away is a no-op, not an error
        finally:
            client.close()
        return True

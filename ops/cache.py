"""A Redis cache that falls back to this process's memory while Redis is down.

The cache only ever holds values that can be recomputed (rate-limit counters, cooldowns,
fragments), so while Redis is unreachable every operation goes to an in-process LocMemCache
instead of turning every page that touches the cache into a 500. Limits and cooldowns
(API keys' per-minute limit, Check now, the per-broker call budget, sign-in attempts,
notification tests) therefore hold per process during an outage, never fail open (issue 24).
Short socket timeouts (in CACHES OPTIONS) keep a dead Redis from adding more than about a
second to a request.
"""

from __future__ import annotations

import functools
import logging
import time

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_last_warning = 0.0


def _warn(operation: str, exc: Exception) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning > 30:  # one line per 30 s, not one per request
        _last_warning = now
        logger.warning("ops.cache.unavailable", extra={"operation": operation, "error": str(exc)})


def _tolerant(method):
    """Redis's answer, or while Redis is unreachable the same operation on this process's
    in-memory fallback cache."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except UNAVAILABLE as exc:
            _warn(name, exc)
            return getattr(self.fallback, name)(*args, **kwargs)

    return wrapper


class TolerantRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        # One per process and location (LocMemCache shares its store by name across threads).
        self.fallback = LocMemCache(f"brokerlink-tolerant-fallback:{server}", {
            "KEY_PREFIX": params.get("KEY_PREFIX", ""), "TIMEOUT": params.get("TIMEOUT", 300),
            "OPTIONS": {"MAX_ENTRIES": 10000},
        })

    get = _tolerant(RedisCache.get)
    set = _tolerant(RedisCache.set)
    add = _tolerant(RedisCache.add)
    touch = _tolerant(RedisCache.touch)
    delete = _tolerant(RedisCache.delete)
    get_many = _tolerant(RedisCache.get_many)
    set_many = _tolerant(RedisCache.set_many)
    delete_many = _tolerant(RedisCache.delete_many)
    has_key = _tolerant(RedisCache.has_key)
    incr = _tolerant(RedisCache.incr)
    clear = _tolerant(RedisCache.clear)

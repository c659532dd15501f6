"""A Redis cache that degrades to a miss when Redis is down.

The cache only ever holds values that can be recomputed (rate-limit counters, fragments),
so while Redis is unreachable reads miss and writes are dropped (reported as done) instead of turning every
page that touches the cache into a 500. Short socket timeouts (in CACHES OPTIONS) keep a
dead Redis from adding more than about a second to a request.
"""

from __future__ import annotations

import functools
import logging
import time

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


def _tolerant(default):
    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except UNAVAILABLE as exc:
                _warn(method.__name__, exc)
                return default(args, kwargs) if callable(default) else default

        return wrapper

    return decorate


def _get_default(args, kwargs):
    return kwargs.get("default", args[1] if len(args) > 1 else None)


class TolerantRedisCache(RedisCache):
    get = _tolerant(_get_default)(RedisCache.get)
    set = _tolerant(None)(RedisCache.set)
    # Fail open: callers use add() as a lock (allauth's rate limiter) and would otherwise refuse every login.
    add = _tolerant(True)(RedisCache.add)
    touch = _tolerant(False)(RedisCache.touch)
    delete = _tolerant(False)(RedisCache.delete)
    get_many = _tolerant({})(RedisCache.get_many)
    set_many = _tolerant(lambda a, k: list(a[0]) if a else [])(RedisCache.set_many)
    delete_many = _tolerant(None)(RedisCache.delete_many)
    has_key = _tolerant(False)(RedisCache.has_key)
    incr = _tolerant(lambda a, k: k.get("delta", a[1] if len(a) > 1 else 1))(RedisCache.incr)
    clear = _tolerant(False)(RedisCache.clear)

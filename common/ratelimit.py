"""Rate limits shared by every process (web, workers) through the Django cache (Redis).

Fixed one-window counters: `cache.add` creates the window's key, `cache.incr` counts in it.
On Redis both are atomic, so two workers calling the same broker share one budget. A broker's
429 with Retry-After pauses every process's calls to that broker until the time it named.
While Redis is down the tolerant cache (ops.cache) counts in each process's memory: the
limits hold per process, never fail open.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.core.cache import cache


@dataclass
class RateLimited(Exception):
    """Over a limit; `retry_after` is the number of seconds until a call may be made."""

    retry_after: float
    what: str = ""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" for {self.what}" if self.what else ""
        return f"Rate limit reached{where}; retry in {math.ceil(self.retry_after)} s."


def rate_limit_hit(key: str, *, limit: int, per_seconds: float, now: float | None = None) -> float:
    """Count one call against `limit` per `per_seconds` under `key`.

    Returns 0 when the call is allowed, else the seconds until the next window opens (the
    call is not counted as made)."""
    now = time.time() if now is None else now
    per = max(1.0, float(per_seconds))
    window = int(now // per)
    cache_key = f"ratelimit:{key}:{window}"
    cache.add(cache_key, 0, timeout=int(per) + 1)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add and incr: start the window again
        cache.add(cache_key, 1, timeout=int(per) + 1)
        count = 1
    if count <= limit:
        return 0.0
    return max(0.001, (window + 1) * per - now)


def rate_limit_wait(key: str, *, limit: int, per_seconds: float, max_wait: float, what: str = "") -> float:
    """Take one slot, sleeping for the next window while that costs at most `max_wait` seconds
    in all. Returns the seconds waited; raises RateLimited when waiting longer would be needed."""
    waited = 0.0
    while True:
        retry_after = rate_limit_hit(key, limit=limit, per_seconds=per_seconds)
        if not retry_after:
            return waited
        if waited + retry_after > max_wait:
            raise RateLimited(retry_after, what)
        time.sleep(retry_after)
        waited += retry_after


def pause_set(key: str, seconds: float) -> None:
    """Every process holds its calls under `key` for `seconds` (a broker's Retry-After)."""
    if seconds > 0:
        cache.set(f"pause:{key}", time.time() + seconds, timeout=math.ceil(seconds) + 1)


def pause_left(key: str) -> float:
    until = cache.get(f"pause:{key}")
    return max(0.0, float(until) - time.time()) if until else 0.0

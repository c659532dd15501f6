"""The account endpoint's token lookup: cached for a moment, and batched so one query
answers many concurrent heartbeats."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from asgiref.sync import sync_to_async

from sandbox.models import SandboxToken, token_hash
from sandbox.services.db_threads import db_executor, on_db_thread

# The account endpoint's token lookup (token + client + grant + account in one query) is kept
# for TOKEN_CACHE_SECONDS. Every change this process makes to a client, grant or token (faults,
# revocations, rotations, via the control API or OAuth endpoints) clears the cache at once; a
# change made by another process is seen within TOKEN_CACHE_SECONDS.
_token_cache: dict[str, tuple[float, SandboxToken]] = {}
_token_cache_generation = 0
# Entries live TOKEN_CACHE_SECONDS (1 s): a few thousand at a time even at 5,000 requests/s.
# Expired ones are dropped when the cache is full, so it never holds a whole cycle's tokens
# (100,000 cached token rows made every garbage collection of the sandbox slower).
TOKEN_CACHE_MAX = 20_000


def token_cache_seconds() -> float:
    """settings.SANDBOX_TOKEN_CACHE_SECONDS, else the environment variable, else 1 s; 0 turns it off."""
    import os

    from django.conf import settings

    value = getattr(settings, "SANDBOX_TOKEN_CACHE_SECONDS", None)
    return float(value if value is not None else os.environ.get("SANDBOX_TOKEN_CACHE_SECONDS") or 1.0)


def token_cache_clear(**kwargs: Any) -> None:
    global _token_cache_generation
    _token_cache_generation += 1
    _token_cache.clear()


def _tokens_load(digests: list[str]) -> dict[str, SandboxToken]:
    rows = SandboxToken.objects.select_related("client", "grant__account").filter(access_token_hash__in=digests)
    return {row.access_token_hash: row for row in on_db_thread(lambda: list(rows.all()))}


# Lookups that arrive within LOOKUP_WINDOW of the first are answered by one query
# (`access_token_hash IN (...)`): under load one query serves dozens of heartbeats. A query
# has a fixed cost (the ORM's compile, a round trip), so answering only what arrived in the
# same loop pass made the sweep's spread-out heartbeats cost the sandbox far more CPU each
# than with this 2 ms window (docs/benchmarks.md#figures-the-code-cites).
_lookups: dict[str, list[asyncio.Future]] = {}
LOOKUP_WINDOW = 0.002


async def _token_load_batched(digest: str) -> SandboxToken | None:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    first = not _lookups
    _lookups.setdefault(digest, []).append(future)
    if first:
        loop.call_later(LOOKUP_WINDOW, lambda: loop.create_task(_lookups_run()))
    return await future


async def _lookups_run() -> None:
    batch = dict(_lookups)
    _lookups.clear()
    try:
        rows = await sync_to_async(_tokens_load, thread_sensitive=False, executor=db_executor)(list(batch))
    except Exception as exc:  # noqa: BLE001 - handed to every waiting request
        for futures in batch.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        return
    for digest, futures in batch.items():
        for future in futures:
            if not future.done():
                future.set_result(rows.get(digest))


async def atoken_for_access(access_token: str) -> SandboxToken | None:
    digest = token_hash(access_token)
    now = time.monotonic()
    hit = _token_cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    generation = _token_cache_generation
    item = await _token_load_batched(digest)
    ttl = token_cache_seconds()
    if item is not None and ttl > 0 and generation == _token_cache_generation:
        if len(_token_cache) >= TOKEN_CACHE_MAX:
            for key in [key for key, (until, _) in _token_cache.items() if until <= now]:
                del _token_cache[key]
            if len(_token_cache) >= TOKEN_CACHE_MAX:
                _token_cache.clear()
        _token_cache[digest] = (now + ttl, item)
    return item

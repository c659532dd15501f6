"""The account endpoint's token lookup: cached for a moment, and batched so one query
answers many concurrent heartbeats."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from sandbox.models import SandboxClient, SandboxGrant, SandboxToken, token_hash
from sandbox.services.db_threads import db_executor, on_db_thread

# The account endpoint's token lookup (the token with its client, grant and account) is kept
# for TOKEN_CACHE_SECONDS. Every change this process makes to a client, grant or token (faults,
# revocations, rotations, via the control API or OAuth endpoints) clears the cache at once; a
# change made by another process is seen within TOKEN_CACHE_SECONDS.
_token_cache: dict[str, tuple[float, SandboxToken]] = {}
_token_cache_generation = 0
# Entries live TOKEN_CACHE_SECONDS, so the cache holds about that long's lookups. Expired ones
# are dropped when the cache is full, so it never holds a whole cycle's tokens (a cache that
# did made every garbage collection of the sandbox slower).
TOKEN_CACHE_MAX = 20_000


def token_cache_seconds() -> float:
    """settings.SANDBOX_TOKEN_CACHE_SECONDS, else the environment variable, else 1 s; 0 turns it off."""
    value = getattr(settings, "SANDBOX_TOKEN_CACHE_SECONDS", None)
    return float(value if value is not None else os.environ.get("SANDBOX_TOKEN_CACHE_SECONDS") or 1.0)


# Clients and grants (each with its account) are shared by many tokens: kept by primary key
# for the same TOKEN_CACHE_SECONDS, so a lookup's query reads token rows alone. Joining the
# four tables built four model instances per token (a client has some forty fields) and
# compiled a four-table query per lookup: most of the endpoint's CPU per request
# (docs/benchmarks.md#the-sandboxs-account-endpoint-get-v1account).
_related_cache: dict[tuple[type, int], tuple[float, Any]] = {}


def _cache_put(cache: dict, key, value, now: float, ttl: float) -> None:
    if len(cache) >= TOKEN_CACHE_MAX:
        # The database threads share the cache: iterate a snapshot, drop what is still there.
        for old in [old for old, (until, _) in list(cache.items()) if until <= now]:
            cache.pop(old, None)
        if len(cache) >= TOKEN_CACHE_MAX:
            cache.clear()
    cache[key] = (now + ttl, value)


def token_cache_clear(**kwargs: Any) -> None:
    global _token_cache_generation
    _token_cache_generation += 1
    _token_cache.clear()
    _related_cache.clear()


def _related(model, pks: set[int], ttl: float, generation: int, *, select=()) -> dict[int, Any]:
    """The rows of `model` (with `select`'s related rows) with these primary keys: from the
    cache when fresh, else read."""
    now = time.monotonic()
    found: dict[int, Any] = {}
    for pk in pks:
        hit = _related_cache.get((model, pk))
        if hit is not None and hit[0] > now:
            found[pk] = hit[1]
    missing = pks - found.keys()
    if missing:
        for row in model.objects.select_related(*select).filter(pk__in=missing):
            found[row.pk] = row
            if ttl > 0 and generation == _token_cache_generation:
                _cache_put(_related_cache, (model, row.pk), row, now, ttl)
    return found


def _tokens_rows(digests: list[str]) -> list[SandboxToken]:
    generation, ttl = _token_cache_generation, token_cache_seconds()
    tokens = list(SandboxToken.objects.filter(access_token_hash__in=digests))
    clients = _related(SandboxClient, {t.client_id for t in tokens}, ttl, generation)
    grants = _related(SandboxGrant, {t.grant_id for t in tokens}, ttl, generation, select=["account"])
    rows = []
    for token in tokens:
        client, grant = clients.get(token.client_id), grants.get(token.grant_id)
        if client is None or grant is None:
            continue  # deleted between the two reads: its tokens are gone with it
        token.client, token.grant = client, grant
        rows.append(token)
    return rows


def _tokens_load(digests: list[str]) -> dict[str, SandboxToken]:
    return {row.access_token_hash: row for row in on_db_thread(_tokens_rows, digests)}


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
        _cache_put(_token_cache, digest, item, now, ttl)
    return item

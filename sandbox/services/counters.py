"""Request counters of clients and grants: written at once (`count`) or, on the hot path,
added up in the process and written in batches (`count_later`)."""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import threading
import time

from asgiref.sync import sync_to_async
from django.db.models import F

from sandbox.models import SandboxClient, SandboxGrant
from sandbox.services.db_threads import db_executor, on_db_thread


def count(client: SandboxClient | None, grant: SandboxGrant | None, field: str) -> None:
    if client is not None:
        SandboxClient.objects.filter(pk=client.pk).update(**{field: F(field) + 1})
    if grant is not None:
        SandboxGrant.objects.filter(pk=grant.pk).update(**{field: F(field) + 1})


# Hot-path counters (account calls) are added up in the process and written in batches: one
# UPDATE per row and flush instead of two contended single-row UPDATEs per request. Anything
# that reads counters (client_counters, the control page) flushes first, so reads stay exact.
COUNTER_FLUSH_SECONDS = 0.5
_pending: collections.Counter = collections.Counter()  # (model, pk, field) -> increment
_pending_lock = threading.Lock()
_last_flush = time.monotonic()
_flush_timer: asyncio.TimerHandle | None = None


_flush_lock = threading.Lock()


def count_later(client: SandboxClient | None, grant: SandboxGrant | None, field: str) -> None:
    with _pending_lock:
        if client is not None:
            _pending[(SandboxClient, client.pk, field)] += 1
        if grant is not None:
            _pending[(SandboxGrant, grant.pk, field)] += 1


def counters_flush() -> None:
    """Write the pending counter increments (coalesced: one UPDATE per model, field and step).
    One flush at a time: a reader flushing before it reads must not overtake a timer's flush
    that has taken the increments but not written them yet."""
    with _flush_lock:
        _counters_flush()


def _counters_flush() -> None:
    global _last_flush
    with _pending_lock:
        pending = dict(_pending)
        _pending.clear()
        _last_flush = time.monotonic()
    groups: dict[tuple, list] = collections.defaultdict(list)
    for (model, pk, field), step in pending.items():
        groups[(model, field, step)].append(pk)
    try:
        for (model, field, step), pks in groups.items():
            model.objects.filter(pk__in=pks).update(**{field: F(field) + step})
    except Exception:
        with _pending_lock:  # keep the counts for the next flush rather than lose them
            _pending.update(pending)
        raise


async def acounters_flush_soon() -> None:
    """From an async view: flush now if the last flush is old, else make sure one is scheduled."""
    global _flush_timer
    if time.monotonic() - _last_flush >= COUNTER_FLUSH_SECONDS:
        await _aflush()
        return
    if _flush_timer is None or _flush_timer.cancelled():
        loop = asyncio.get_running_loop()

        def fire():
            global _flush_timer
            _flush_timer = None
            if _pending:
                loop.create_task(_aflush())

        _flush_timer = loop.call_later(COUNTER_FLUSH_SECONDS, fire)


async def _aflush() -> None:
    await sync_to_async(on_db_thread, thread_sensitive=False, executor=db_executor)(counters_flush)


def _counters_flush_at_exit() -> None:
    if _pending:
        with contextlib.suppress(Exception):  # the database may be gone already at exit
            counters_flush()


atexit.register(_counters_flush_at_exit)

"""Refreshes off the batch path: a process-wide thread pool the sweep hands refreshes to.

A batch waits a short while (REFRESH_WAIT_SECONDS) for its refreshes. One still running then
(a stalled broker: rotating refreshes wait minutes for their answer, engine.refresh) is left
to finish on its own thread while the batch carries on: the connection is checked with the
token it has if that one still has life, or looked at again shortly. A refresh finished that
way that finds the grant dead moves the connection to needs_reauth itself. Each broker gets at
most REFRESH_THREADS_PER_BROKER threads, so one stalled broker cannot starve the others, and a
connection already being refreshed in this process is not queued again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field

from django.db import connection as db_connection

from connections import errors
from connections.errors import BrokerError
from engine.conf import engine_setting
from engine.refresh import RefreshResult, connection_refresh

logger = logging.getLogger(__name__)


class Pending:
    """Still running when the batch stopped waiting."""

    def __repr__(self) -> str:
        return "PENDING"


PENDING = Pending()


@dataclass
class _Job:
    connection_id: object
    broker_slug: str
    kwargs: dict
    future: Future | None = None
    detached: bool = False
    finished: bool = False
    result: object = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_inflight: dict[str, _Job] = {}
_per_broker: Counter = Counter()


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        # A forked worker child does not inherit usable threads: start its own pool.
        _pool = ThreadPoolExecutor(
            max_workers=max(1, int(engine_setting("REFRESH_THREADS"))), thread_name_prefix="refresh"
        )
        _pool_pid = os.getpid()
        _inflight.clear()
        _per_broker.clear()
    return _pool


def _run(job: _Job) -> RefreshResult | BrokerError:
    try:
        result: RefreshResult | BrokerError = connection_refresh(job.connection_id, **job.kwargs)
    except BrokerError as exc:
        result = exc
    except Exception as exc:  # noqa: BLE001 - one bad row must not sink the batch
        logger.exception("connections.refresh.crashed", extra={"connection_id": str(job.connection_id)})
        result = BrokerError(errors.UNEXPECTED, f"The token refresh failed inside brokerlink ({type(exc).__name__}).")
    try:
        with job.lock:
            job.result, job.finished = result, True
            detached = job.detached
        if detached:
            _settle_detached(job, result)
    finally:
        with _lock:
            _inflight.pop(str(job.connection_id), None)
            _per_broker[job.broker_slug] -= 1
        db_connection.close()
    return result


def _settle_detached(job: _Job, result) -> None:
    """Nobody waits for this result any more: apply what cannot wait for the next check."""
    if not isinstance(result, BrokerError) or not result.needs_reauth:
        return
    from connections.models import Connection, ConnectionStatus
    from connections.state import INACTIVE_STATUSES, connection_transition

    try:
        connection = Connection.objects.get(pk=job.connection_id)
        if connection.status not in INACTIVE_STATUSES:
            # What the operator reads is why, not the last thing the batch said (e.g. "waiting").
            connection.last_error_category, connection.last_error_message = result.category, result.message[:500]
            connection.save(update_fields=["last_error_category", "last_error_message"])
            connection_transition(
                connection=connection,
                to_status=ConnectionStatus.NEEDS_REAUTH,
                message=result.message,
                category=result.category,
            )
    except Exception:  # noqa: BLE001 - the next check applies it anyway
        logger.exception("connections.refresh.settle_failed", extra={"connection_id": str(job.connection_id)})


def refreshes_run(jobs: list[tuple[object, str, dict]], *, wait_seconds: float | None = None) -> list:
    """Run `(connection_id, broker_slug, connection_refresh kwargs)` jobs; for each, its
    RefreshResult, its BrokerError, or PENDING when it is still running (or could not start
    yet) after `wait_seconds`."""
    if not jobs:
        return []
    if wait_seconds is None:
        wait_seconds = float(engine_setting("REFRESH_WAIT_SECONDS"))
    per_broker_cap = max(1, int(engine_setting("REFRESH_THREADS_PER_BROKER")))
    started: list[_Job | None] = []
    with _lock:
        pool = _executor()
        for connection_id, slug, kwargs in jobs:
            key = str(connection_id)
            if key in _inflight or _per_broker[slug] >= per_broker_cap:
                started.append(None)
                continue
            job = _Job(connection_id, slug, kwargs)
            _inflight[key] = job
            _per_broker[slug] += 1
            job.future = pool.submit(_run, job)
            started.append(job)
    futures = [job.future for job in started if job is not None]
    futures_wait(futures, timeout=wait_seconds)
    results = []
    for job in started:
        if job is None:
            results.append(PENDING)
            continue
        with job.lock:
            if job.finished:
                results.append(job.result)
            else:
                job.detached = True
                results.append(PENDING)
    return results


def refreshes_wait_idle(timeout: float = 30.0) -> bool:
    """Wait until this process runs no refresh. For tests: a worker's shutdown does not call it (a
    refresh cut short there is an attempt whose answer was lost, which the engine never repeats)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _lock:
            if not _inflight:
                return True
        time.sleep(0.05)
    return False

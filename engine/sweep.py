"""The heartbeat sweep: claim due connections in batches under a lease, check them, repeat.

Claiming is one short transaction per batch, on the connections' EngineState rows (the lease
lives there, off the connection's row: docs/engine.md#data-model). On PostgreSQL the
candidates are read with `SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent sweeps (several workers, a duplicated
beat) take disjoint rows without waiting; on SQLite (no row locks) the conditional UPDATE
below does the same job, more slowly. Either way the UPDATE only takes rows whose lease is
free or expired, and the claim is confirmed by reading back our own `lease_owner` token, so
two sweeps never check one connection in a cycle, and a lease left by a killed worker simply
expires (LEASE_SECONDS) and the row is claimed again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Case, Exists, F, Min, OuterRef, Q, Sum, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from connections.models import Connection
from connections.state import INACTIVE_STATUSES
from engine.batch import BatchStats, connections_with_ids
from engine.check import connections_check
from engine.conf import engine_setting
from engine.dbretry import db_write_retried
from engine.heartbeat_client import session_kept
from engine.models import EngineState, SweepRun

logger = logging.getLogger(__name__)


def claim_owner() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _checkable():
    """Connections the sweep checks: active, with a token."""
    return Connection.objects.exclude(status__in=INACTIVE_STATUSES).exclude(
        access_token_sealed="", refresh_token_sealed=""
    )


def _due(cutoff: datetime, now: datetime):
    """The EngineState rows of checkable connections due by `cutoff` whose lease is free at `now`.
    The connection's conditions are an EXISTS, not a join, so the conditional UPDATE of the
    claim stays a plain UPDATE of EngineState."""
    return (
        EngineState.objects.filter(next_check_at__lte=cutoff)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Exists(_checkable().filter(pk=OuterRef("pk"))))
    )


def connections_claim(*, owner: str, limit: int, cutoff: datetime, lease_seconds: float) -> list[Connection]:
    """Lease up to `limit` due connections to `owner` and return them (fully loaded, with
    their EngineState)."""
    now = timezone.now()
    with transaction.atomic():
        candidates = _due(cutoff, now).order_by("next_check_at")
        if db_connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        connections_with_ids(_due(cutoff, now), ids).update(
            lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds)
        )
    # No select_related("broker_app"): a check never reads the app (a refresh loads its own
    # row with it), and the join cost a model instance per row (docs/benchmarks.md#figures-the-code-cites).
    mine = Connection.objects.select_related("engine_state").filter(engine_state__lease_owner=owner)
    return list(connections_with_ids(mine, ids))


def leases_release(ids, *, owner: str, retry_in: timedelta) -> int:
    """Give back a batch's leases after it failed as a whole; its rows are due again soon (but
    one that left the checked set meanwhile, its next check NULL, stays unscheduled)."""
    now = timezone.now()
    return EngineState.objects.filter(pk__in=ids, lease_owner=owner).update(
        lease_owner="",
        lease_until=None,
        next_check_at=Case(When(next_check_at__isnull=True, then=None), default=Value(now + retry_in)),
    )


def batch_run(claimed: list[Connection], *, owner: str) -> BatchStats:
    """Check one claimed batch. Whatever happens, its leases are released: a batch that fails
    as a whole (a bug, the database gone for longer than the write retries) gives its rows back
    to be checked again shortly, instead of holding them until the lease runs out."""
    try:
        return connections_check(claimed, owner=owner)
    except Exception:
        logger.exception("connections.sweep.batch_failed", extra={"owner": owner, "size": len(claimed)})
        try:
            leases_release([c.pk for c in claimed], owner=owner, retry_in=timedelta(seconds=30))
        except Exception:  # noqa: BLE001 - the leases then simply expire
            logger.exception("connections.sweep.release_failed", extra={"owner": owner})
        stats = BatchStats()
        stats.failed = len(claimed)
        return stats


def sweep_run(
    *,
    batch_size: int | None = None,
    lease_seconds: float | None = None,
    budget_seconds: float | None = None,
    max_batches: int | None = None,
    run_id: int | None = None,
    deadline: float | None = None,
) -> SweepRun:
    """One sweep: every connection due when it started, or falling due while it runs, is
    checked (or left to the next sweep when the time budget runs out). Safe to run
    concurrently and twice. Always finishes its SweepRun, whatever a batch does.

    As a lane of a beat tick (`run_id`, the tick's SweepRun; `deadline`, a Unix time after
    which no batch is claimed) it adds its counts to the tick's row instead of writing one."""
    batch_size = int(batch_size or engine_setting("BATCH_SIZE"))
    lease_seconds = float(lease_seconds or engine_setting("LEASE_SECONDS"))
    budget_seconds = float(budget_seconds or engine_setting("SWEEP_BUDGET_SECONDS"))
    if deadline is not None:
        budget_seconds = min(budget_seconds, deadline - time.time())
    lookahead = timedelta(seconds=float(engine_setting("SWEEP_LOOKAHEAD_SECONDS")))
    started = time.monotonic()
    if run_id is None:
        run = SweepRun.objects.create(owner=claim_owner(), started_at=timezone.now())
    else:
        run = SweepRun(pk=run_id, owner=claim_owner())
        _run_add(run_id, lanes_started=1)
    batches = 0
    try:
        # One aiohttp session for all the batches: keep-alive connections are reused.
        with session_kept():
            while time.monotonic() - started < budget_seconds and (max_batches is None or batches < max_batches):
                owner = claim_owner()
                cutoff = timezone.now() + lookahead
                claimed = connections_claim(owner=owner, limit=batch_size, cutoff=cutoff, lease_seconds=lease_seconds)
                if not claimed:
                    break
                batches += 1
                oldest = min(c.next_check_at for c in claimed)
                lag = (timezone.now() - oldest).total_seconds()
                run.max_lag_seconds = max(run.max_lag_seconds, lag)
                stats = batch_run(claimed, owner=owner)
                run.claimed += len(claimed)
                run.checked += stats.checked
                run.refreshed += stats.refreshed
                run.failed += stats.failed
                run.deferred += stats.deferred
                if run_id is not None:
                    # The tick's row shows the cycle's progress while its lanes run (one UPDATE per batch).
                    _run_add_quietly(
                        run_id, lag=lag, batches=1, claimed=len(claimed), checked=stats.checked,
                        refreshed=stats.refreshed, failed=stats.failed, deferred=stats.deferred,
                    )  # fmt: skip
    finally:
        run.batches = batches
        run.finished_at = timezone.now()
        run.duration_ms = int((time.monotonic() - started) * 1000)
        try:
            if run_id is None:
                db_write_retried(lambda: run.save())
            else:
                db_write_retried(lambda: _run_add(run_id, lanes_finished=1, finished_at=run.finished_at))
        except Exception:  # noqa: BLE001 - the sweep's work is written; only its summary is lost
            logger.exception("connections.sweep.summary_failed")
    try:
        from engine.notifications import notifications_dispatch

        notifications_dispatch()
    except Exception:  # noqa: BLE001 - a mail problem must not fail the sweep
        logger.exception("connections.notifications.failed")
    logger.info(
        "connections.sweep.done",
        extra={
            "run_id": run.pk,
            "lane": run_id is not None,
            "claimed": run.claimed,
            "checked": run.checked,
            "refreshed": run.refreshed,
            "failed": run.failed,
            "deferred": run.deferred,
            "duration_ms": run.duration_ms,
            "max_lag_seconds": run.max_lag_seconds,
        },
    )
    return run


def _run_add(run_id: int, *, lag: float | None = None, finished_at: datetime | None = None, **counts: int) -> None:
    """Add a lane's counts to its tick's SweepRun in one UPDATE (lanes on other workers do too)."""
    values: dict = {name: F(name) + n for name, n in counts.items()}
    if lag is not None:
        values["max_lag_seconds"] = Greatest(F("max_lag_seconds"), Value(lag))
    if finished_at is not None:
        # The last lane to finish sets the cycle's end; the duration runs from the tick.
        started_at = SweepRun.objects.filter(pk=run_id).values_list("started_at", flat=True).first()
        values["finished_at"] = finished_at
        if started_at is not None:
            values["duration_ms"] = max(0, int((finished_at - started_at).total_seconds() * 1000))
    SweepRun.objects.filter(pk=run_id).update(**values)


def _run_add_quietly(run_id: int, **values) -> None:
    try:
        _run_add(run_id, **values)
    except Exception:  # noqa: BLE001 - progress figures are not worth a batch
        logger.exception("connections.sweep.progress_failed", extra={"run_id": run_id})


def lanes_in_flight(*, now: datetime | None = None) -> int:
    """Lanes sent by recent ticks that may still be queued or running, across every worker.

    Queued: sent but not started, by ticks whose lanes have not expired yet (a lane message
    expires at its tick's deadline). Running: started and not finished, by ticks recent enough
    that their lanes can still be checking (deadline + the slack of a last batch); a lane on a
    killed worker counts until then, and its leases expire as usual."""
    now = now or timezone.now()
    budget = float(engine_setting("SWEEP_BUDGET_SECONDS"))
    slack = 2 * float(engine_setting("HTTP_TIMEOUT")) + float(engine_setting("REFRESH_WAIT_SECONDS"))
    totals = SweepRun.objects.filter(lanes__gt=0, started_at__gte=now - timedelta(seconds=budget + slack)).aggregate(
        running=Sum(F("lanes_started") - F("lanes_finished")),
        queued=Sum(F("lanes") - F("lanes_started"), filter=Q(started_at__gte=now - timedelta(seconds=budget))),
    )
    return max(0, int(totals["running"] or 0)) + max(0, int(totals["queued"] or 0))


def sweep_tick(*, now: datetime | None = None) -> tuple[SweepRun, int]:
    """The beat's tick: count what is due (up to SWEEP_LANES × LANE_CONNECTIONS, one bounded
    query), decide how many lanes to send (one per LANE_CONNECTIONS due, at most SWEEP_LANES
    in flight across the cluster) and record the cycle's SweepRun. Returns it and the number of
    lanes to send; the caller sends them (`engine.tasks.heartbeat_tick`). With nothing due,
    or every lane still busy, the row is finished at once."""
    now = now or timezone.now()
    max_lanes = max(1, int(engine_setting("SWEEP_LANES")))
    per_lane = max(1, int(engine_setting("LANE_CONNECTIONS")))
    cutoff = now + timedelta(seconds=float(engine_setting("SWEEP_LOOKAHEAD_SECONDS")))
    due = _due(cutoff, now).order_by()[: max_lanes * per_lane].count()
    wanted = min(max_lanes, -(-due // per_lane))
    lanes = max(0, min(wanted, max_lanes - lanes_in_flight(now=now)))
    # The lag at the tick: a tick that could send no lane (all busy) still shows a backlog.
    lag = sweep_lag_seconds(now=now) if due else 0.0
    run = SweepRun.objects.create(
        owner=f"tick:{claim_owner()}", started_at=now, due=due, lanes=lanes, max_lag_seconds=lag
    )
    if not lanes:
        run.finished_at, run.duration_ms = timezone.now(), 0
        run.save(update_fields=["finished_at", "duration_ms"])
    logger.info("connections.sweep.tick", extra={"run_id": run.pk, "due": due, "lanes": lanes, "wanted": wanted})
    return run, lanes


def sweep_lag_seconds(*, now: datetime | None = None) -> float:
    """How late the most overdue active connection is right now (0 when none is due)."""
    now = now or timezone.now()
    oldest = _due(now, now).aggregate(oldest=Min("next_check_at"))["oldest"]
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0

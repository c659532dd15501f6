"""Celery tasks of the engine. Thin: each calls one engine service.

Their names are the ones they had when the engine lived inside the connections app: a tick or
lane queued before an upgrade, and beat's schedule, still find their task after it."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="connections.tasks.heartbeat_tick", acks_late=True, ignore_result=True)
def heartbeat_tick() -> dict:
    """The beat's heartbeat cycle: record it and send its lanes, which any worker process may
    take. Safe twice: a duplicated tick counts the lanes in flight, and lanes claim with leases."""
    from datetime import timedelta

    from engine.conf import engine_setting
    from engine.sweep import sweep_tick

    run, lanes = sweep_tick()
    budget = float(engine_setting("SWEEP_BUDGET_SECONDS"))
    deadline = run.started_at + timedelta(seconds=budget)
    for _ in range(lanes):
        # A lane not started by the cycle's deadline is useless: the next tick sends fresh ones.
        heartbeat_lane.apply_async(kwargs={"run_id": run.pk, "deadline": deadline.timestamp()}, expires=deadline)
    return {"run_id": run.pk, "due": run.due, "lanes": lanes}


@shared_task(name="connections.tasks.heartbeat_lane", acks_late=True, ignore_result=True)
def heartbeat_lane(run_id: int, deadline: float) -> dict:
    """One lane of a tick: claim batches (leases, SKIP LOCKED) and check them until nothing is
    due or the cycle's deadline passes. Safe twice, like every sweep."""
    from engine.sweep import sweep_run

    run = sweep_run(run_id=run_id, deadline=deadline)
    return {"run_id": run_id, "claimed": run.claimed, "checked": run.checked, "duration_ms": run.duration_ms}


@shared_task(name="connections.tasks.checkresults_prune", acks_late=True, ignore_result=True)
def checkresults_prune() -> int:
    from engine.retention import checkresults_prune as prune

    return prune()


@shared_task(name="connections.tasks.checkresults_rollup", acks_late=True, ignore_result=True)
def checkresults_rollup() -> int:
    from engine.retention import checkresults_rollup as rollup

    return rollup()


@shared_task(name="connections.tasks.expiry_warnings_send", acks_late=True, ignore_result=True)
def expiry_warnings_send() -> int:
    from engine.notifications import expiry_warnings_send as send

    return send()

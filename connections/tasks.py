"""Celery tasks of the connections app. Thin: each calls one engine service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="connections.tasks.heartbeat_sweep", acks_late=True, ignore_result=True)
def heartbeat_sweep(**options) -> dict:
    """Safe twice: leases make a duplicated tick claim nothing a running sweep holds.
    Options (batch_size, lease_seconds, budget_seconds, max_batches) are for tests and benches."""
    from connections.engine.sweep import sweep_run

    run = sweep_run(**options)
    return {"claimed": run.claimed, "checked": run.checked, "duration_ms": run.duration_ms}


@shared_task(name="connections.tasks.checkresults_prune", acks_late=True, ignore_result=True)
def checkresults_prune() -> int:
    from connections.engine.retention import checkresults_prune as prune

    return prune()


@shared_task(name="connections.tasks.checkresults_rollup", acks_late=True, ignore_result=True)
def checkresults_rollup() -> int:
    from connections.engine.retention import checkresults_rollup as rollup

    return rollup()


@shared_task(name="connections.tasks.expiry_warnings_send", acks_late=True, ignore_result=True)
def expiry_warnings_send() -> int:
    from connections.engine.notifications import expiry_warnings_send as send

    return send()


@shared_task(name="connections.tasks.connection_refresh", acks_late=True, ignore_result=True)
def connection_refresh(connection_id: str, reason: str = "requested") -> bool:
    """Refresh one connection if still due (single-flight, so a duplicate delivery is harmless)."""
    from connections.engine.refresh import connection_refresh as refresh
    from connections.errors import BrokerError

    try:
        return refresh(connection_id, reason=reason).refreshed
    except BrokerError:
        return False

"""The beat's tick and its lanes, in-process: how many lanes a tick sends, the cap on lanes in
flight across ticks, one SweepRun per cycle fed by every lane, and the per-broker cap on
heartbeats in flight. The same cycle on real Celery workers: tests/ops/test_scale_out.py."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from aiohttp import web
from django.utils import timezone

from engine.heartbeat_client import HeartbeatRequest, heartbeats_run_async
from engine.models import EngineState, SweepRun
from engine.sweep import lanes_in_flight, sweep_run, sweep_tick
from ops.alerts import sweep_lag
from tests.engine.history import stored_checks

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_tick_sends_one_lane_per_lane_of_due_work_up_to_the_cap(world, settings):
    settings.ENGINE_LANE_CONNECTIONS = 2
    settings.ENGINE_SWEEP_LANES = 3
    for _ in range(5):
        world.connection()
    run, lanes = sweep_tick()
    assert (run.due, lanes, run.lanes) == (5, 3, 3)  # 5 due → 3 lanes wanted, 3 allowed
    assert run.finished_at is None  # until its lanes finish
    # Nothing started yet: all three count as in flight, so a second tick sends none.
    assert lanes_in_flight() == 3
    again, more = sweep_tick()
    assert more == 0 and again.finished_at is not None and again.due == 5

    # The due count is bounded (SWEEP_LANES × LANE_CONNECTIONS), never a scan of everything.
    settings.ENGINE_LANE_CONNECTIONS = 1
    settings.ENGINE_SWEEP_LANES = 2
    bounded, _ = sweep_tick()
    assert bounded.due == 2


def test_lanes_share_the_cycle_and_write_one_sweeprun(world, settings):
    settings.ENGINE_LANE_CONNECTIONS = 3
    settings.ENGINE_BATCH_SIZE = 2
    connections = [world.connection() for _ in range(6)]
    fell_due = min(EngineState.objects.values_list("next_check_at", flat=True))
    run, lanes = sweep_tick()
    assert lanes == 2
    deadline = time.time() + 30
    # Two lanes (here one after the other): the first takes one batch, the second the rest.
    sweep_run(run_id=run.pk, deadline=deadline, max_batches=1)
    assert lanes_in_flight() == 1  # one finished, one still queued
    sweep_run(run_id=run.pk, deadline=deadline)
    run.refresh_from_db()
    assert (run.lanes_started, run.lanes_finished, run.batches) == (2, 2, 3)
    assert run.claimed == run.checked == 6 and run.failed == 0
    assert run.finished_at is not None and run.duration_ms >= 0 and run.max_lag_seconds > 0
    assert SweepRun.objects.count() == 1  # one row per cycle, not one per lane
    assert lanes_in_flight() == 0
    for conn in connections:
        assert len(stored_checks(conn)) == 1
    # Alerts read the cycle's lag from its row: how late the oldest connection was when claimed,
    # never more than the time since it fell due (how long that is depends on the machine).
    assert 0 < run.max_lag_seconds <= (run.finished_at - fell_due).total_seconds()
    assert sweep_lag(now=run.started_at) == run.max_lag_seconds


def test_a_lane_past_its_cycle_deadline_claims_nothing(world):
    world.connection()
    run, lanes = sweep_tick()
    assert lanes == 1
    sweep_run(run_id=run.pk, deadline=time.time() - 1)
    run.refresh_from_db()
    assert run.claimed == 0 and run.lanes_finished == 1
    assert EngineState.objects.filter(lease_owner="").count() == 1


def test_a_killed_lane_counts_as_in_flight_only_until_its_cycle_is_over(world, settings):
    settings.ENGINE_SWEEP_LANES = 2
    run, _ = sweep_tick()
    SweepRun.objects.filter(pk=run.pk).update(lanes=2, lanes_started=2)  # two lanes died mid-cycle
    assert lanes_in_flight() == 2
    SweepRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=120))
    assert lanes_in_flight() == 0


def test_heartbeats_in_flight_per_broker_are_capped():
    """`per_group` bounds the requests one broker sees at once, whatever the total concurrency."""
    peak: dict[str, int] = {}
    now: dict[str, int] = {}

    async def handler(request):
        group = request.match_info["group"]
        now[group] = now.get(group, 0) + 1
        peak[group] = max(peak.get(group, 0), now[group])
        await asyncio.sleep(0.05)
        now[group] -= 1
        return web.json_response({"ok": True})

    async def main():
        app = web.Application()
        app.router.add_get("/{group}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        items = [
            HeartbeatRequest(key=i, url=f"http://127.0.0.1:{port}/{g}", access_token="t" * 20, group=g)
            for i in range(40)
            for g in ("a", "b")
        ]
        try:
            results = await heartbeats_run_async(items, concurrency=50, timeout=10, per_group=4)
        finally:
            await runner.cleanup()
        return results

    results = asyncio.run(main())
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert peak == {"a": 4, "b": 4}


def test_a_tick_that_finds_every_lane_busy_still_reports_the_backlog(world, settings):
    settings.ENGINE_SWEEP_LANES = 1
    conn = world.connection()
    EngineState.objects.filter(pk=conn.pk).update(next_check_at=timezone.now() - timedelta(seconds=90))
    first, lanes = sweep_tick()
    assert lanes == 1
    busy, lanes = sweep_tick()  # the first tick's lane has not run yet
    assert lanes == 0 and busy.due == 1 and busy.finished_at is not None
    assert busy.max_lag_seconds >= 89  # what alerts read from the latest SweepRun
    assert sweep_lag(now=timezone.now()) >= 89

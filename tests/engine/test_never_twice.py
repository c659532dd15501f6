"""Never twice, with real processes: two Celery workers (two pool processes each) and two beats
on the production path (beat's tick -> lanes, tests/engine/cycle.py) against the sandbox broker,
whose own counters say how often each grant was checked or refreshed.

One scenario, five ways to try to do something twice:

- check: over several cycles every connection is checked exactly once per cycle, the cycle's
  lanes shared by both workers, duplicate ticks from the second beat finding nothing to do;
- refresh: due tokens (rotating refresh tokens) refreshed exactly once each, no reuse;
- check_now / refresh_now: a person's "Check now" / "Refresh now" racing the workers on one
  rotating grant, round after round: each refresh token spent once, the grant alive at the end;
- worker_killed: a worker SIGKILLed while it holds a batch: the other worker retakes the batch
  after its lease; nothing is checked twice except, at most once, the killed batch's stalled
  heartbeats the broker still answered.

"Nothing more happens" is proven by later events (ticks the beats sent after the cycle, found
finished), never by waiting a while.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.db.models import F
from django.utils import timezone

from connections.errors import BrokerError
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from engine.checkstore import rings_for
from engine.models import EngineState, SweepRun
from engine.refresh_runner import refreshes_wait_idle
from engine.services import CheckBusy, connection_check_now, connection_refresh_now
from ops.models import ServiceHeartbeat
from tests.engine.conftest import FAST_ENGINE_ENV, time_passes
from tests.engine.history import stored_checks
from tests.support import log_text, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CLUSTER_ENV = {
    **FAST_ENGINE_ENV,
    "HEARTBEAT_INTERVAL_SECONDS": "1",  # each beat ticks every second: duplicate ticks all the time
    "BROKERLINK_ENGINE_BATCH_SIZE": "3",
    "BROKERLINK_ENGINE_LANE_CONNECTIONS": "4",
    "BROKERLINK_ENGINE_SWEEP_LANES": "2",
}
ROUNDS = 50  # per manual action: 100 racing rounds in all, as before the scenario was one


def checks(ids) -> int:
    """Checks stored for these connections (each one's check log holds its recent checks)."""
    return sum(len(ring.checks) for ring in rings_for(ids).values())


def finished_ticks_after(pk: int) -> int:
    return SweepRun.objects.filter(
        pk__gt=pk, owner__startswith="tick:", finished_at__isnull=False, lanes_finished__gte=F("lanes")
    ).count()


def quiet_after_cycle(ids, expected: int) -> None:
    """Wait for the cycle's checks, then for two more ticks of the beats to finish: they came
    after the cycle, so anything they could still check has been checked. Then count."""
    wait_for(lambda: checks(ids) >= expected, timeout=60, what=f"{expected} checks stored")
    last = SweepRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    wait_for(lambda: finished_ticks_after(last) >= 2, timeout=60, what="two later ticks finished")
    assert checks(ids) == expected


def lane_claims(proc) -> dict[int, int]:
    """{tick SweepRun id: connections claimed} by the lanes one worker ran, from its log
    (Celery logs each task's return value; lanes return their tick's id and their claims)."""
    claims: dict[int, int] = {}
    pattern = re.compile(r"connections\.tasks\.heartbeat_lane\[[^\]]+\] succeeded in [0-9.]+s: (\{[^}]*\})")
    for match in pattern.finditer(log_text(proc)):
        result = ast.literal_eval(match.group(1))
        claims[result["run_id"]] = claims.get(result["run_id"], 0) + result["claimed"]
    return claims


def broker_calls(world, before: dict) -> list[int]:
    after = {g["id"]: g["account_calls"] for g in world.counters()["grants"]}
    return sorted(after[g] - before.get(g, 0) for g in after)


# --- the ways to try twice ------------------------------------------------------------------------


def check(world, cluster, connections):
    ids = [c.pk for c in connections]
    before = {g["id"]: g["account_calls"] for g in world.counters()["grants"]}
    cycles = 3
    world.faults(latency_ms=300)  # each batch of 3 takes >= 0.3 s: the two lanes overlap
    EngineState.objects.filter(pk__in=ids).update(next_check_at=timezone.now())
    for cycle in range(1, cycles + 1):
        if cycle > 1:
            time_passes(60)  # the interval has passed: every connection is due again
        quiet_after_cycle(ids, cycle * len(ids))

    # The cycles' checks were made by the ticks' lanes, spread over both workers; how they split
    # is the scheduler's (on a loaded machine one lane may claim a whole cycle before the other
    # starts, or a duplicate tick's lane may take what a late one would have), but some tick
    # must have been shared, or the two workers never ran at once and the scenario proved nothing.
    w1, w2 = (lane_claims(proc) for proc in cluster.workers)
    claimed = [run for run in set(w1) | set(w2) if w1.get(run) or w2.get(run)]
    assert [run for run in claimed if w1.get(run) and w2.get(run)], f"no tick shared: w1 {w1}, w2 {w2}"
    assert sum(w1.values()) + sum(w2.values()) == cycles * len(ids), f"claims per tick: w1 {w1}, w2 {w2}"
    for run_id in claimed:
        run = SweepRun.objects.get(pk=run_id)
        assert run.checked == w1.get(run_id, 0) + w2.get(run_id, 0)
        assert run.lanes == run.lanes_started == run.lanes_finished
        assert run.finished_at is not None
    # Ticks with nothing due (the second beat's duplicates among them) sent no lane.
    assert SweepRun.objects.filter(owner__startswith="tick:", lanes=0).count() >= 2
    wait_for(lambda: ServiceHeartbeat.objects.filter(kind="beat").count() == 2, timeout=60, what="both beats alive")
    # The broker's own count agrees: each grant's account endpoint called once per cycle.
    assert broker_calls(world, before) == [cycles] * len(ids)
    for conn in connections:
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.CONNECTED and conn.lease_owner == ""
        assert len(stored_checks(conn)) == cycles


def refresh(world, cluster, connections):
    ids = [c.pk for c in connections]
    before = world.counters()
    # Every token is due for a refresh (brokerlink believes each expires within 30 s): go.
    EngineState.objects.filter(pk__in=ids).update(next_check_at=timezone.now())
    quiet_after_cycle(ids, len(ids))
    assert refreshes_wait_idle(timeout=30)
    after = world.counters()
    assert after["rotated_reuses"] == 0
    assert after["refreshes"] - before["refreshes"] == len(ids)
    for conn in connections:
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.CONNECTED
        assert conn.events.filter(kind=ConnectionEvent.Kind.REFRESHED).count() == 1
        assert conn.access_expires_at > timezone.now() + timedelta(minutes=5)
        assert len(stored_checks(conn)) == 1


def _in_thread(fn, errors: list) -> threading.Thread:
    def run():
        try:
            fn()
        except (CheckBusy, BrokerError):
            pass  # busy, or "a refresh is already running": both are honest answers
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            db_connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _racing_rounds(world, connections, *, refresh_now: bool):
    """Round after round the token falls due and the workers' cycles, "Check now" (and
    "Refresh now") all want to refresh it: each refresh token is spent once."""
    (conn,) = connections  # one rotating grant
    before = world.counters()
    manual_refreshes = 0
    errors: list = []
    for round_number in range(ROUNDS):
        # A 15-minute token with 60 s left (the refresh margin is relative to the lifetime).
        Connection.objects.filter(pk=conn.pk).update(
            access_expires_at=timezone.now() + timedelta(seconds=60),
            last_refreshed_at=timezone.now() - timedelta(seconds=840),
        )
        EngineState.objects.filter(pk=conn.pk).update(next_check_at=timezone.now())
        threads = [_in_thread(lambda: connection_check_now(Connection.objects.get(pk=conn.pk)), errors)]
        if refresh_now:
            manual_refreshes += 1
            threads.append(_in_thread(lambda: connection_refresh_now(Connection.objects.get(pk=conn.pk)), errors))
        for thread in threads:
            thread.join(timeout=60)
        assert refreshes_wait_idle(timeout=30)
        wait_for(
            lambda: (
                (row := Connection.objects.get(pk=conn.pk)).access_expires_at > timezone.now() + timedelta(minutes=5)
                and not row.refresh_claim_owner
            ),
            timeout=30,
            what=f"round {round_number}: the due token refreshed",
        )
    assert not errors, errors
    after = world.counters()
    assert after["rotated_reuses"] == 0
    spent = after["refreshes"] - before["refreshes"]
    # One refresh per due token; a "Refresh now" may add one (it is asked for explicitly).
    assert ROUNDS <= spent <= ROUNDS + manual_refreshes, spent
    # The grant is alive at the end: the stored refresh token is the live one.
    conn.refresh_from_db()
    assert connection_refresh_now(conn).access_token
    outcome = connection_check_now(Connection.objects.get(pk=conn.pk))
    assert outcome.ok and world.counters()["rotated_reuses"] == 0


def check_now(world, cluster, connections):
    _racing_rounds(world, connections, refresh_now=False)


def refresh_now(world, cluster, connections):
    _racing_rounds(world, connections, refresh_now=True)


def worker_killed(world, cluster, connections):
    ids = [c.pk for c in connections]
    before = {g["id"]: g["account_calls"] for g in world.counters()["grants"]}
    world.faults(latency_ms=2000)  # slow answers (inside the 5 s timeout): a batch is held 2 s
    EngineState.objects.filter(pk__in=ids).update(next_check_at=timezone.now())
    doomed = cluster.workers[0].pid  # its process group: the worker and its pool children

    def held_by_doomed() -> bool:
        held = EngineState.objects.filter(pk__in=ids).exclude(lease_owner="")
        for owner in held.values_list("lease_owner", flat=True):
            try:
                if os.getpgid(int(owner.split(":")[1])) == doomed:
                    return True
            except (ProcessLookupError, ValueError, IndexError):
                continue
        return False

    wait_for(held_by_doomed, timeout=30, what="the doomed worker claimed a batch")
    os.killpg(doomed, signal.SIGKILL)
    cluster.workers[0].wait(timeout=10)
    quiet_after_cycle(ids, len(ids))  # the survivor retook the killed batch after its 3 s lease
    assert cluster.workers[1].poll() is None and all(beat.poll() is None for beat in cluster.beats)
    for conn in connections:
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.CONNECTED and conn.lease_owner == ""
        assert len(stored_checks(conn)) == 1
    # The broker's own count: once per connection; the killed batch's stalled heartbeats may
    # have reached it once more, nothing else.
    calls = broker_calls(world, before)
    assert len(calls) == len(ids) and calls[0] == 1 and calls[-1] <= 2, calls


RACING = {"HEARTBEAT_INTERVAL_SECONDS": "1", "BROKERLINK_ENGINE_REFRESH_WAIT_SECONDS": "2"}
# way -> (scenario, connections, their options, pool processes per worker, worker environment)
SCENARIOS = {
    # One pool process per worker: both workers must take lanes of the same cycle.
    "check": (check, 12, {}, 1, {}),
    "refresh": (refresh, 12, {"expires_in": 30}, 2, {}),
    "check_now": (check_now, 1, {}, 1, RACING),
    "refresh_now": (refresh_now, 1, {}, 1, RACING),
    "worker_killed": (worker_killed, 12, {}, 1, {}),
}


@pytest.mark.parametrize("way", list(SCENARIOS))
def test_two_workers_and_two_beats_never_check_or_refresh_anything_twice(way, world, celery_cluster):
    scenario, count, options, concurrency, env = SCENARIOS[way]
    connections = [world.connection(**options) for _ in range(count)]
    # Nothing is due until both workers listen: the cycles below are the test's, not the start-up's.
    EngineState.objects.filter(pk__in=[c.pk for c in connections]).update(
        next_check_at=timezone.now() + timedelta(hours=1)
    )
    cluster_env = {"SANDBOX_BASE_URL": world.sandbox.url, **CLUSTER_ENV, **env}
    with celery_cluster(workers=2, beats=2, env=cluster_env, concurrency=concurrency) as cluster:
        wait_for(
            lambda: all(" ready." in log_text(proc) for proc in cluster.workers), timeout=60, what="both workers ready"
        )
        scenario(world, cluster, connections)
        survivors = cluster.workers[1:] if way == "worker_killed" else cluster.workers
        assert all(proc.poll() is None for proc in survivors + cluster.beats), "a process died"

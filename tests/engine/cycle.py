"""One heartbeat cycle the way production runs it: beat's tick (`engine.tasks.heartbeat_tick`)
records the cycle's SweepRun and sends its lanes (`heartbeat_lane`), which worker processes take.

    with worker(workers=2):
        run = run_one_cycle()            # real workers take the lanes; returns the finished SweepRun
    run = run_one_cycle_in_process()     # no worker: the same tasks, run inline (Celery eager mode)

Both return the cycle's SweepRun once it is finished (every lane it sent has finished).
Importable from a child process too (`manage.py shell -c`): nothing here needs pytest.
"""

from __future__ import annotations

from django.db.models import F

from engine.models import SweepRun


def _last_run_id() -> int:
    return SweepRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _finished_tick_after(last: int) -> SweepRun | None:
    """The first tick row after `last` whose every lane has finished (each lane sets finished_at)."""
    return (
        SweepRun.objects.filter(pk__gt=last, owner__startswith="tick:", finished_at__isnull=False)
        .filter(lanes_finished__gte=F("lanes"))
        .order_by("pk")
        .first()
    )


def run_one_cycle(*, timeout: float = 60) -> SweepRun:
    """Send beat's tick to the running workers and wait until its cycle has finished."""
    from engine.tasks import heartbeat_tick
    from tests.support import wait_for

    last = _last_run_id()
    heartbeat_tick.apply_async()
    return wait_for(lambda: _finished_tick_after(last), timeout=timeout, what="a tick's cycle finished")


def run_cycles(count: int, *, timeout: float = 60) -> list[SweepRun]:
    """`count` cycles one after the other, each finished before the next tick is sent."""
    return [run_one_cycle(timeout=timeout) for _ in range(count)]


def run_one_cycle_in_process() -> SweepRun:
    """The same tick and lanes without a worker: Celery's eager mode runs the tick inline and
    each lane it sends inline too, in this process."""
    from config.celery import app
    from engine.tasks import heartbeat_tick

    last = _last_run_id()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        heartbeat_tick.apply()
    finally:
        app.conf.task_always_eager = eager
    run = _finished_tick_after(last)
    assert run is not None, "the tick's cycle did not finish"
    return run


def cycle_summary(run: SweepRun) -> dict:
    """What a finished cycle did, as plain values (a child process prints it as JSON)."""
    return {
        "run_id": run.pk,
        "due": run.due,
        "lanes": run.lanes,
        "claimed": run.claimed,
        "checked": run.checked,
        "failed": run.failed,
        "duration_ms": run.duration_ms,
    }

"""engine.worker.heap_frozen: each Celery worker process freezes its heap once at start."""

from __future__ import annotations

import gc
import sys
import weakref

from celery.signals import worker_process_init

from engine.worker import heap_frozen


def test_a_worker_process_freezes_its_heap_with_the_lane_modules_in_it():
    receivers = [r() if isinstance(r, weakref.ReferenceType) else r for _, r in worker_process_init.receivers]
    assert heap_frozen in receivers  # connected by EngineConfig.ready(), before the pool forks
    try:
        heap_frozen()
        assert "engine.sweep" in sys.modules and "aiohttp" in sys.modules
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()  # later objects are still collected
    finally:
        gc.unfreeze()

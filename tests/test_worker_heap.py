"""config.celery.heap_frozen: each Celery worker process freezes its heap once at start."""

from __future__ import annotations

import gc
import sys

from celery.signals import worker_process_init

from config.celery import heap_frozen


def test_a_worker_process_freezes_its_heap_with_the_lane_modules_in_it():
    assert heap_frozen in [receiver() for _, receiver in worker_process_init.receivers]
    try:
        heap_frozen()
        assert "engine.sweep" in sys.modules and "aiohttp" in sys.modules
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()  # later objects are still collected
    finally:
        gc.unfreeze()
